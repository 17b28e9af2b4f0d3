// Command etcd is the pinned etcd server used by keysmith's local control plane
// (envtest and `make dev`). It only hands over to etcdmain.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
