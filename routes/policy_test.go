package routes

import (
	"testing"
	"time"
)

func TestResendPolicyDelay(t *testing.T) {
	p := DefaultResendPolicy
	tests := []struct {
		n    int
		want time.Duration
	}{
		{1, time.Minute}, {2, 2 * time.Minute}, {3, 4 * time.Minute}, {5, 16 * time.Minute},
		{6, 30 * time.Minute}, {40, 30 * time.Minute},
	}
	for _, tc := range tests {
		if got := p.Delay(tc.n); got != tc.want {
			t.Errorf("Delay(%d) = %s, want %s", tc.n, got, tc.want)
		}
	}
	for _, bad := range []ResendPolicy{{}, {Initial: time.Minute, Max: time.Second, GiveUp: time.Hour}, {Initial: time.Minute, Max: time.Hour, GiveUp: time.Second}} {
		if bad.Validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestOrderingHeader(t *testing.T) {
	tests := []struct {
		payload string
		ok      bool
		seq     int64
	}{
		{`{"personNo":"32010620261126000017","seq":3}`, true, 3},
		{`{"personNo":"32010620261126000017","seq":0}`, false, 0},
		{`{"personNo":"3201062026112600001","seq":1}`, false, 0},
		{`{"personNo":32010620261126000017,"seq":1}`, false, 0},
		{`{"seq":1}`, false, 0},
		{`not json`, false, 0},
	}
	for _, tc := range tests {
		_, seq, ok := ordering([]byte(tc.payload))
		if ok != tc.ok || seq != tc.seq {
			t.Errorf("%s: %d %v", tc.payload, seq, ok)
		}
	}
}
