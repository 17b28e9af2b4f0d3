package testenv

import "runtime"

// HeapAfterGC returns the memory statistics of this process after two garbage collections (the second
// frees what the first only finalized), for the suites that bound how much keysmith's caches and the
// verifier may grow under a tenant's or a client's input.
func HeapAfterGC() runtime.MemStats {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}
