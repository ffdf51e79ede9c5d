package core_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/feedbridge/feedbridge/core"
)

// Whatever a worker finishes a job with reads clearly: the built-in
// worker's results, custom objects with their extra fields kept, plain
// strings (a success with a message), and results too large or with
// wrong types (a 502 saying so).
func TestParseResult(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		ok       bool
		code     int
		msg      string
		json     string // the result as clients see it ("" = not checked)
		errHas   string
	}{
		{"built-in", `{"ok":true,"code":201,"id":"n1","rev":"1-0"}`, true, 201, "", `{"ok":true,"code":201,"id":"n1","rev":"1-0"}`, ""},
		{"failure", `{"ok":false,"code":404,"error":"no item"}`, false, 404, "", `{"ok":false,"code":404,"error":"no item"}`, "no item"},
		{"extra fields kept", `{"ok":true,"code":200,"shipped":"42"}`, true, 200, "", `{"ok":true,"code":200,"shipped":"42"}`, ""},
		{"message", `{"ok":true,"code":200,"message":"deployed to prod"}`, true, 200, "deployed to prod", "", ""},
		{"code only", `{"code":409,"error":"busy"}`, false, 409, "", "", "busy"},
		{"ok only", `{"ok":false}`, false, 500, "", "", ""},
		{"free-form object", `{"eta":"5m"}`, true, 200, "", `{"eta":"5m"}`, ""},
		{"plain string", `done`, true, 200, "done", `{"ok":true,"code":200,"message":"done"}`, ""},
		{"JSON string", `"done"`, true, 200, "done", "", ""},
		{"number", `42`, true, 200, "", `42`, ""},
		{"empty", ``, true, 200, "", "", ""},
		{"ok of the wrong type", `{"ok":"yes","code":200}`, false, 502, "", "", `"ok"`},
		{"code of the wrong type", `{"ok":true,"code":"200"}`, false, 502, "", "", `"code"`},
		{"code out of range", `{"ok":true,"code":42}`, false, 502, "", "", `"code"`},
		{"message of the wrong type", `{"ok":true,"code":200,"message":7}`, false, 502, "", "", `"message"`},
		{"binary", "\xff\xfe", false, 502, "", "", "neither JSON nor text"},
		{"huge", strings.Repeat("x", core.MaxResultBytes+1), false, 502, "", "", "over the limit"},
	} {
		r := core.ParseResult([]byte(tc.in))
		if r.OK != tc.ok || r.Code != tc.code || r.Message != tc.msg || !strings.Contains(r.Error, tc.errHas) {
			t.Errorf("%s: %+v", tc.name, r)
			continue
		}
		if tc.json != "" {
			b, err := json.Marshal(r)
			if err != nil || string(b) != tc.json {
				t.Errorf("%s: renders %s (%v), want %s", tc.name, b, err, tc.json)
			}
		}
	}
}
