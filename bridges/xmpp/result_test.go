package xmpp

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"

	"github.com/feedbridge/feedbridge/core"
)

// A worker's message reaches the requester as a headline message, its
// text escaped; a result without one adds nothing.
func TestWorkerMessage(t *testing.T) {
	req := &request{From: "alice@localhost/phone", To: "pubsub.localhost"}
	if toks := workerMessage(req, &core.Result{OK: true, Code: 200}); toks != nil {
		t.Fatalf("a result without a message: %v", toks)
	}
	var b bytes.Buffer
	enc := xml.NewEncoder(&b)
	for _, tok := range workerMessage(req, &core.Result{OK: true, Code: 200, Message: "shipped <v2> & done\x01"}) {
		if err := enc.EncodeToken(tok); err != nil {
			t.Fatal(err)
		}
	}
	_ = enc.Flush()
	got := b.String()
	for _, want := range []string{`type="headline"`, `from="pubsub.localhost"`, `to="alice@localhost/phone"`,
		`<body>shipped &lt;v2&gt; &amp; done`} {
		if !strings.Contains(got, want) {
			t.Errorf("message %s lacks %s", got, want)
		}
	}
	if strings.Contains(got, "\x01") {
		t.Errorf("message %q carries a control character", got)
	}
}
