package main

import (
	"bufio"
	"encoding/json"
	"os"
)

// The API server writes an audit record for every write keysmith's processes make (user chaos-manager);
// counting them from outside needs no cooperation from the processes under test.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  users: ["chaos-manager"]
  verbs: ["create", "update", "patch", "delete"]
- level: None
`

type auditRecord struct {
	Verb      string `json:"verb"`
	ObjectRef struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
	} `json:"objectRef"`
	ResponseStatus struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	Stage string `json:"stage"`
}

// writes counts the successful writes by resource ("apikeys", "apikeys/status", "secrets", "events",
// "leases") in namespace ns among the audit records after the first skip lines; it also returns the
// number of lines read, to count from there next time.
func auditWrites(path, ns string, skip int) (map[string]int, int) {
	out := map[string]int{}
	f, err := os.Open(path)
	if err != nil {
		return out, skip
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		if n <= skip {
			continue
		}
		var r auditRecord
		if json.Unmarshal(sc.Bytes(), &r) != nil || r.Stage != "ResponseComplete" || r.ResponseStatus.Code >= 300 {
			continue
		}
		if ns != "" && r.ObjectRef.Namespace != ns {
			continue
		}
		res := r.ObjectRef.Resource
		if r.ObjectRef.Subresource != "" {
			res += "/" + r.ObjectRef.Subresource
		}
		out[res]++
	}
	return out, n
}

func auditLines(path string) int {
	_, n := auditWrites(path, "", 0)
	return n
}
