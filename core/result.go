package core

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// MaxResultBytes is the largest job result shown to clients and kept in a
// job's status record; a larger one is answered as a 502 saying so.
const MaxResultBytes = 64 << 10

// Result is what a job was finished with, as a client sees it. The
// built-in worker writes {"ok":..,"code":..,"error":..,"id":..,"rev":..};
// workers of any language may write any JSON object (their extra fields
// are kept, see Raw), a JSON string or plain text (a success whose
// Message is the text). Codes follow HTTP: 200 done, 201 created, 400 bad
// request, 403 forbidden, 404 not found, 409 conflict, 412 the item
// changed since the revision given, 413 too large, 422 invalid item, 501
// verb not handled here, 500 failure, 502 a result that cannot be read.
type Result struct {
	OK    bool   `json:"ok"`
	Code  int    `json:"code"`
	Error string `json:"error,omitempty"`
	// ID is the item the action produced or changed.
	ID string `json:"id,omitempty"`
	// Rev is the journal revision of the change.
	Rev string `json:"rev,omitempty"`
	// Message is a worker's words for people (IRC and XMPP replies show it).
	Message string `json:"message,omitempty"`
	// Raw is the worker's JSON result as written, when it was a JSON
	// value other than what the fields above render: it is what
	// MarshalJSON writes, so a client sees every field the worker wrote.
	Raw json.RawMessage `json:"-"`
}

// MarshalJSON writes the worker's result as written (Raw) when there is
// one, else the fields.
func (r Result) MarshalJSON() ([]byte, error) {
	if len(r.Raw) > 0 {
		return r.Raw, nil
	}
	type plain Result
	return json.Marshal(plain(r))
}

// JSON renders the result as the built-in worker writes it.
func (r Result) JSON() []byte {
	var b bytes.Buffer
	type plain Result
	_ = jsonEncoder(&b).Encode(plain(r))
	return bytes.TrimRight(b.Bytes(), "\n")
}

// ParseResult reads a job result as written by any worker (see Result):
// a JSON object with ok and code (either may be left out: ok follows code
// under 400, code follows ok as 200 or 500; with neither the result is a
// success), a JSON string or any other text (a success with that text as
// its message). A result that is too large, or whose ok, code, error, id,
// rev or message has the wrong type, is a 502 that says what is wrong.
func ParseResult(b []byte) Result {
	if len(b) > MaxResultBytes {
		return Result{Code: 502, Error: fmt.Sprintf("the worker's result is %d bytes, over the limit of %d: it is not shown", len(b), MaxResultBytes)}
	}
	trimmed := bytes.TrimSpace(b)
	if len(trimmed) == 0 {
		return Result{OK: true, Code: 200}
	}
	if !json.Valid(trimmed) {
		if !utf8.Valid(b) {
			return Result{Code: 502, Error: "the worker's result is neither JSON nor text"}
		}
		return Result{OK: true, Code: 200, Message: string(b)}
	}
	switch trimmed[0] {
	case '"':
		var s string
		_ = json.Unmarshal(trimmed, &s) // valid JSON
		return Result{OK: true, Code: 200, Message: s}
	case '{':
	default:
		return Result{OK: true, Code: 200, Raw: json.RawMessage(trimmed)}
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &fields); err != nil {
		return Result{Code: 502, Error: "the worker's result is not a JSON object it can be read as"}
	}
	r := Result{Raw: json.RawMessage(trimmed)}
	bad := func(field, want string) Result {
		return Result{Code: 502, Raw: r.Raw, Error: fmt.Sprintf("the worker's result has %q that is not %s", field, want)}
	}
	okRaw, hasOK := fields["ok"]
	if hasOK && json.Unmarshal(okRaw, &r.OK) != nil {
		return bad("ok", "true or false")
	}
	if c, has := fields["code"]; has {
		if json.Unmarshal(c, &r.Code) != nil || r.Code < 100 || r.Code > 599 {
			return bad("code", "a status code from 100 to 599")
		}
		if !hasOK {
			r.OK = r.Code < 400
		}
	} else if !hasOK || r.OK {
		r.OK, r.Code = true, 200
	} else {
		r.Code = 500
	}
	for name, dst := range map[string]*string{"error": &r.Error, "id": &r.ID, "rev": &r.Rev, "message": &r.Message} {
		if v, has := fields[name]; has && json.Unmarshal(v, dst) != nil {
			return bad(name, "a string")
		}
	}
	if len(fields) <= 6 && !hasExtra(fields) {
		r.Raw = nil // nothing beyond the fields: render them
	}
	return r
}

// hasExtra reports a field beyond those Result renders.
func hasExtra(fields map[string]json.RawMessage) bool {
	for k := range fields {
		switch k {
		case "ok", "code", "error", "id", "rev", "message":
		default:
			return true
		}
	}
	return false
}
