// Package gitops checks keysmith against the tools platform teams watch it with: Argo CD (the health and
// action scripts in config/argocd, run here the way Argo CD runs scripts from argocd-cm), kstatus (what
// Flux and kpt compute) and `kubectl wait`, on recorded objects and on live ApiKeys of the real control
// plane.
package gitops

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	lua "github.com/yuin/gopher-lua"
)

// Runtime runs Lua scripts as Argo CD runs the health and action scripts configured in argocd-cm without
// resource.customizations.useOpenLibs:
//   - gopher-lua with SkipOpenLibs, then only the package, base and table libraries: no string, io,
//     math, debug or full os library (scripts cannot call string.format or ("x"):upper());
//   - a restricted os with only time and date, reachable through require("os"): as in Argo CD, the global
//     os stays unset (its opener registers nothing new), so a script must start with
//     local os = require("os");
//   - the object in the global obj, an empty global actionParams, and a deadline of one second;
//   - the value the script returns read through the same JSON encoding (an empty table is [], a table
//     with keys 1..n an array, mixed or sparse keys and a table reached twice are errors).
type Runtime struct {
	// Now is the clock behind os.time and os.date; nil means time.Now.
	Now func() time.Time
	// Timeout bounds one run; zero means Argo CD's one second.
	Timeout time.Duration
}

// HealthStatus is the result of a health script.
type HealthStatus struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
}

// Argo CD's health statuses. Any other value a script returns becomes Unknown.
const (
	Healthy     = "Healthy"
	Progressing = "Progressing"
	Degraded    = "Degraded"
	Suspended   = "Suspended"
	Missing     = "Missing"
	Unknown     = "Unknown"
)

// invalidHealthStatus is the message Argo CD gives a status it does not know.
const invalidHealthStatus = "Lua returned an invalid health status"

// ResourceAction is one action a discovery script offers.
type ResourceAction struct {
	Name   string `json:"name,omitempty"`
	Params []struct {
		Name string `json:"name,omitempty"`
	} `json:"params,omitempty"`
	Disabled    bool   `json:"disabled,omitempty"`
	IconClass   string `json:"iconClass,omitempty"`
	DisplayName string `json:"displayName,omitempty"`
}

// ImpactedResource is one object an action returns, with what to do with it ("patch" or "create").
type ImpactedResource struct {
	Object    map[string]any `json:"resource"`
	Operation string         `json:"operation"`
}

func (r Runtime) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// run executes script with obj as the global obj and hands the value it returned to read, while the
// state is still open.
func (r Runtime) run(obj map[string]any, script string, read func(lua.LValue) error) error {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		if err := L.CallByParam(lua.P{Fn: L.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return fmt.Errorf("opening %s: %w", lib.name, err)
		}
	}
	L.PreloadModule(lua.OsLibName, r.restrictedOS)

	timeout := r.Timeout
	if timeout == 0 {
		timeout = time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	L.SetContext(ctx)
	L.SetGlobal("actionParams", L.NewTable())
	L.SetGlobal("obj", toLua(L, obj))

	fn, err := L.LoadString(script)
	if err != nil {
		return err
	}
	L.Push(fn)
	if err := L.PCall(0, lua.MultRet, nil); err != nil {
		var apiErr *lua.ApiError
		if errors.As(err, &apiErr) && apiErr.Type == lua.ApiErrorRun {
			// Argo CD drops the stack trace: the user sees the error value alone.
			apiErr.StackTrace = ""
			return apiErr
		}
		return err
	}
	return read(L.Get(-1))
}

// Health runs a health script and reads its result as Argo CD does: a table decoded into status and
// message (an empty table or nil is an empty status), any status Argo CD does not know becoming Unknown.
func (r Runtime) Health(obj map[string]any, script string) (HealthStatus, error) {
	var hs HealthStatus
	err := r.run(obj, script, func(v lua.LValue) error {
		switch v.Type() {
		case lua.LTNil:
			return nil
		case lua.LTTable:
		default:
			return fmt.Errorf("expect table output from Lua script, not %s", v.Type())
		}
		data, err := encodeJSON(v)
		if err != nil {
			return err
		}
		if string(data) == "[]" {
			return nil
		}
		if err := json.Unmarshal(data, &hs); err != nil {
			return err
		}
		switch hs.Status {
		case Healthy, Progressing, Degraded, Suspended, Missing, Unknown:
		default:
			hs = HealthStatus{Status: Unknown, Message: invalidHealthStatus}
		}
		return nil
	})
	return hs, err
}

// ResourceHealth is the health Argo CD's application controller shows: an object being deleted is
// Progressing, "Pending deletion", without running the script; a script error is Unknown with the error.
func (r Runtime) ResourceHealth(obj map[string]any, script string) HealthStatus {
	if md, ok := obj["metadata"].(map[string]any); ok && md["deletionTimestamp"] != nil {
		return HealthStatus{Status: Progressing, Message: "Pending deletion"}
	}
	hs, err := r.Health(obj, script)
	if err != nil {
		return HealthStatus{Status: Unknown, Message: err.Error()}
	}
	return hs
}

// Discover runs a discovery script: a table of action name to its settings (an empty table for an
// action with none), an action enabled unless disabled is true. The result is sorted by name.
func (r Runtime) Discover(obj map[string]any, script string) ([]ResourceAction, error) {
	var out []ResourceAction
	err := r.run(obj, script, func(v lua.LValue) error {
		if v.Type() != lua.LTTable {
			return fmt.Errorf("expect table output from Lua script, not %s", v.Type())
		}
		data, err := encodeJSON(v)
		if err != nil {
			return err
		}
		if string(data) == "[]" {
			return nil
		}
		var actions map[string]any
		if err := json.Unmarshal(data, &actions); err != nil {
			return err
		}
		for name, settings := range actions {
			a := ResourceAction{Name: name}
			if m, ok := settings.(map[string]any); ok {
				b, err := json.Marshal(m)
				if err != nil {
					return err
				}
				if err := json.Unmarshal(b, &a); err != nil {
					return err
				}
				d, _ := m["disabled"].(bool)
				a.Disabled = d
			}
			out = append(out, a)
		}
		return nil
	})
	sortActions(out)
	return out, err
}

func sortActions(a []ResourceAction) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j].Name < a[j-1].Name; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

// Action runs an action script and reads its output as Argo CD does: a JSON array is the new style (a
// list of {resource, operation}); anything else is the old style, the modified obj, to be patched. A
// patched object has the empty objects of obj that Lua turned into empty arrays put back.
func (r Runtime) Action(obj map[string]any, script string) ([]ImpactedResource, error) {
	var out []ImpactedResource
	err := r.run(obj, script, func(v lua.LValue) error {
		if v.Type() != lua.LTTable {
			return fmt.Errorf("expect table output from Lua script, not %s", v.Type())
		}
		data, err := encodeJSON(v)
		if err != nil {
			return err
		}
		if len(data) < 2 {
			return errors.New("Lua output was not a valid json object or array")
		}
		if data[0] == '[' && data[len(data)-1] == ']' {
			if err := json.Unmarshal(data, &out); err != nil {
				return err
			}
			for _, ir := range out {
				if ir.Operation != "patch" && ir.Operation != "create" {
					return fmt.Errorf("unsupported operation: %q", ir.Operation)
				}
			}
		} else {
			var o map[string]any
			if err := json.Unmarshal(data, &o); err != nil {
				return err
			}
			out = []ImpactedResource{{Object: o, Operation: "patch"}}
		}
		for i := range out {
			if out[i].Operation == "patch" {
				out[i].Object = restoreEmptyObjects(out[i].Object, obj)
			}
		}
		return nil
	})
	return out, err
}

// MergePatch is the patch Argo CD's API server sends for a patched object: the JSON merge patch from the
// live object to the action's output (nil when they are equal).
func MergePatch(live, patched map[string]any) ([]byte, error) {
	a, err := json.Marshal(live)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(patched)
	if err != nil {
		return nil, err
	}
	p, err := jsonpatch.CreateMergePatch(a, b)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(p, []byte("{}")) {
		return nil, nil
	}
	return p, nil
}

// restoreEmptyObjects walks the action's output beside the original object: where the original held an
// object and the output an empty array (Lua cannot tell {} from []), the object is put back.
func restoreEmptyObjects(out, orig map[string]any) map[string]any {
	for k, was := range orig {
		now, ok := out[k]
		if !ok {
			continue
		}
		switch n := now.(type) {
		case map[string]any:
			if w, ok := was.(map[string]any); ok {
				out[k] = restoreEmptyObjects(n, w)
			}
		case []any:
			switch w := was.(type) {
			case map[string]any:
				if len(n) == 0 {
					out[k] = map[string]any{}
				}
			case []any:
				out[k] = restoreInArray(n, w)
			}
		}
	}
	return out
}

func restoreInArray(out, orig []any) []any {
	for i := 0; i < len(out) && i < len(orig); i++ {
		switch n := out[i].(type) {
		case map[string]any:
			if w, ok := orig[i].(map[string]any); ok {
				out[i] = restoreEmptyObjects(n, w)
			}
		case []any:
			if w, ok := orig[i].([]any); ok {
				out[i] = restoreInArray(n, w)
			}
		}
	}
	return out
}

// toLua converts a decoded JSON value (as unstructured objects hold it) to Lua, as Argo CD does: integers
// and floats become numbers, json.Number a string, anything it does not know nil.
func toLua(L *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(x)
	case string:
		return lua.LString(x)
	case json.Number:
		return lua.LString(x)
	case float64:
		return lua.LNumber(x)
	case int:
		return lua.LNumber(x)
	case int32:
		return lua.LNumber(x)
	case int64:
		return lua.LNumber(x)
	case []any:
		t := L.CreateTable(len(x), 0)
		for _, e := range x {
			t.Append(toLua(L, e))
		}
		return t
	case map[string]any:
		t := L.CreateTable(0, len(x))
		for k, e := range x {
			t.RawSetH(lua.LString(k), toLua(L, e))
		}
		return t
	}
	return lua.LNil
}

// encodeJSON encodes a Lua value the way Argo CD's JSON library does.
func encodeJSON(v lua.LValue) ([]byte, error) {
	var buf bytes.Buffer
	err := encodeValue(&buf, v, map[*lua.LTable]bool{})
	return buf.Bytes(), err
}

func encodeValue(buf *bytes.Buffer, v lua.LValue, seen map[*lua.LTable]bool) error {
	switch x := v.(type) {
	case *lua.LNilType:
		buf.WriteString("null")
	case lua.LBool:
		buf.WriteString(strconv.FormatBool(bool(x)))
	case lua.LNumber:
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("json: unsupported value: %v", f)
		}
		b, _ := json.Marshal(f)
		buf.Write(b)
	case lua.LString:
		b, _ := json.Marshal(string(x))
		buf.Write(b)
	case *lua.LTable:
		if seen[x] {
			return errors.New("cannot encode recursively nested tables to JSON")
		}
		seen[x] = true
		key, val := x.Next(lua.LNil)
		switch key.Type() {
		case lua.LTNil:
			buf.WriteString("[]")
		case lua.LTNumber:
			buf.WriteByte('[')
			for want := lua.LNumber(1); key != lua.LNil; want++ {
				if key.Type() != lua.LTNumber {
					return errors.New("cannot encode mixed or invalid key types")
				}
				if key.(lua.LNumber) != want {
					return errors.New("cannot encode sparse array")
				}
				if want > 1 {
					buf.WriteByte(',')
				}
				if err := encodeValue(buf, val, seen); err != nil {
					return err
				}
				key, val = x.Next(key)
			}
			buf.WriteByte(']')
		case lua.LTString:
			fields := map[string]json.RawMessage{}
			for key != lua.LNil {
				if key.Type() != lua.LTString {
					return errors.New("cannot encode mixed or invalid key types")
				}
				var b bytes.Buffer
				if err := encodeValue(&b, val, seen); err != nil {
					return err
				}
				fields[string(key.(lua.LString))] = b.Bytes()
				key, val = x.Next(key)
			}
			b, err := json.Marshal(fields)
			if err != nil {
				return err
			}
			buf.Write(b)
		default:
			return errors.New("cannot encode mixed or invalid key types")
		}
	default:
		return fmt.Errorf("cannot encode %s to JSON", v.Type())
	}
	return nil
}

// restrictedOS is the os module Argo CD gives scripts: time and date only.
func (r Runtime) restrictedOS(L *lua.LState) int {
	mod := L.NewTable()
	L.SetFuncs(mod, map[string]lua.LGFunction{"time": r.osTime, "date": r.osDate})
	L.Push(mod)
	return 1
}

// osTime returns the current Unix time, or the time of a table {year, month, day[, hour=12, min, sec]}
// in the local zone.
func (r Runtime) osTime(L *lua.LState) int {
	if L.GetTop() == 0 {
		L.Push(lua.LNumber(r.now().Unix()))
		return 1
	}
	t := L.CheckTable(1)
	field := func(name string, def int) int {
		if n, ok := t.RawGetString(name).(lua.LNumber); ok {
			return int(n)
		}
		return def
	}
	at := time.Date(field("year", -1), time.Month(field("month", -1)), field("day", -1),
		field("hour", 12), field("min", 0), field("sec", 0), 0, time.Local)
	L.Push(lua.LNumber(at.Unix()))
	return 1
}

// osDate formats the current time (UTC with a leading "!") with C strftime directives, or returns a
// table for "*t". A second argument, a Unix time, is formatted in the local zone, as Argo CD does.
func (r Runtime) osDate(L *lua.LState) int {
	t := r.now()
	layout := "%c"
	if L.GetTop() >= 1 {
		layout = L.CheckString(1)
		if strings.HasPrefix(layout, "!") {
			t = t.UTC()
			layout = strings.TrimLeft(layout, "!")
		}
		if L.GetTop() >= 2 {
			t = time.Unix(L.CheckInt64(2), 0)
		}
		if strings.HasPrefix(layout, "*t") {
			tb := L.NewTable()
			for k, v := range map[string]int{"year": t.Year(), "month": int(t.Month()), "day": t.Day(),
				"hour": t.Hour(), "min": t.Minute(), "sec": t.Second(), "wday": int(t.Weekday()) + 1, "yday": 0} {
				tb.RawSetString(k, lua.LNumber(v))
			}
			tb.RawSetString("isdst", lua.LFalse)
			L.Push(tb)
			return 1
		}
	}
	L.Push(lua.LString(strftime(t, layout)))
	return 1
}

// strftimeLayouts maps the C directives Argo CD's os.date knows to Go layouts (%a is printed as the
// literal "mon", as there).
var strftimeLayouts = map[byte]string{
	'a': "mon", 'A': "Monday", 'b': "Jan", 'B': "January", 'c': "02 Jan 06 15:04 MST", 'd': "02",
	'F': "2006-01-02", 'H': "15", 'I': "03", 'm': "01", 'M': "04", 'p': "PM", 'P': "pm", 'S': "05",
	'x': "15/04/05", 'X': "15:04:05", 'y': "06", 'Y': "2006", 'z': "-0700", 'Z': "MST",
}

func strftime(t time.Time, layout string) string {
	var b strings.Builder
	for i := 0; i < len(layout); i++ {
		c := layout[i]
		if c != '%' || i == len(layout)-1 {
			b.WriteByte(c)
			continue
		}
		i++
		d := layout[i]
		switch {
		case d == '%':
			b.WriteByte('%')
		case d == 'w':
			b.WriteString(strconv.Itoa(int(t.Weekday())))
		case strftimeLayouts[d] != "":
			b.WriteString(t.Format(strftimeLayouts[d]))
		default:
			b.WriteByte('%')
			b.WriteByte(d)
		}
	}
	return b.String()
}
