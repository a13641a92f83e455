package contracts

import (
	"errors"
	"strings"
	"testing"
)

// FuzzValidatePayload checks that no input panics, that every error maps to
// its bus code with a path-naming reason, and that an accepted payload
// re-encodes to a payload that is accepted again.
func FuzzValidatePayload(f *testing.F) {
	for _, c := range loadManifest(f) {
		if c.Payload != nil && string(c.Payload) != "null" {
			f.Add(c.Kind, []byte(c.Payload))
		}
	}
	f.Add(KindRegister, []byte(`{"personNo":"32010620261126000017","seq":1,"idType":"111","idNo":"31010419860517135X"}`))
	f.Add(KindChange, []byte(`{"changes":{"idNo":"x"},"changes":{}}`))
	f.Add(KindControl, []byte(`{"regions":["000000","000000"],"level":1e400}`))
	f.Add(KindReceipt, []byte(`{"ref":"\ud800","code":"E1\u0000"}`))
	f.Add("keyperson.merge", []byte(`[]`))
	f.Add(KindTask, []byte(`{"items":[[[[{}]]]]}`))
	v := newTestValidator(f)
	f.Fuzz(func(t *testing.T, kind string, payload []byte) {
		got, err := v.ValidatePayload(kind, payload)
		if err == nil {
			if got == nil {
				t.Fatal("nil payload without error")
			}
			assertRoundTrip(t, v, kind, got)
			return
		}
		if got != nil {
			t.Fatalf("payload %#v with error %v", got, err)
		}
		var fe *FieldError
		switch code := ErrorCode(err); code {
		case CodeMalformed, CodeUnknownKind:
		case CodeSchema, CodeIDNumber, CodeNotInTable:
			if !errors.As(err, &fe) || fe.Path == "" || !strings.HasPrefix(fe.Reason, fe.Path+"：") {
				t.Fatalf("field error %#v", err)
			}
		default:
			t.Fatalf("unexpected code %s: %v", code, err)
		}
	})
}
