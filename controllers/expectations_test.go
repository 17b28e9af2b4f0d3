package controllers

import (
	"errors"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

func TestOwnWrites(t *testing.T) {
	key := types.NamespacedName{Namespace: "ns", Name: "s"}
	other := types.NamespacedName{Namespace: "ns", Name: "t"}
	tests := []struct {
		name string
		run  func(o *ownWrites) []bool // results of mine(), in order
		want []bool
	}{
		{"event after the write returns is mine, once", func(o *ownWrites) []bool {
			_ = o.track(key, func() (string, error) { return "5", nil })
			return []bool{o.mine(key, "5"), o.mine(key, "5")}
		}, []bool{true, false}},
		{"event before the write returns is mine, and is not expected again", func(o *ownWrites) []bool {
			var early bool
			_ = o.track(key, func() (string, error) { early = o.mine(key, "5"); return "5", nil })
			return []bool{early, o.mine(key, "5")}
		}, []bool{true, false}},
		{"someone else's later version is not mine", func(o *ownWrites) []bool {
			_ = o.track(key, func() (string, error) { return "5", nil })
			return []bool{o.mine(key, "6")}
		}, []bool{false}},
		{"a failed write expects nothing", func(o *ownWrites) []bool {
			_ = o.track(key, func() (string, error) { return "", errors.New("conflict") })
			return []bool{o.mine(key, "5"), o.mine(key, "")}
		}, []bool{false, false}},
		{"another Secret is not affected", func(o *ownWrites) []bool {
			_ = o.track(key, func() (string, error) { return "5", nil })
			return []bool{o.mine(other, "5"), o.mine(key, "5")}
		}, []bool{false, true}},
		{"nothing tracked", func(o *ownWrites) []bool { return []bool{o.mine(key, "1")} }, []bool{false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &ownWrites{}
			got := tt.run(o)
			for i := range tt.want {
				if got[i] != tt.want[i] {
					t.Fatalf("mine() #%d = %v, want %v", i, got[i], tt.want[i])
				}
			}
			if len(o.m) != 0 && tt.name != "someone else's later version is not mine" {
				t.Fatalf("records left behind: %d", len(o.m))
			}
		})
	}
}
