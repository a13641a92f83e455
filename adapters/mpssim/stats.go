package mpssim

import "maps"

// StatusCodes counts receipts by status, then code.
type StatusCodes map[string]map[string]int

// Add counts one receipt.
func (c StatusCodes) Add(status, code string) {
	m := c[status]
	if m == nil {
		m = map[string]int{}
		c[status] = m
	}
	m[code]++
}

// Total returns the number of receipts counted.
func (c StatusCodes) Total() int {
	n := 0
	for _, m := range c {
		for _, v := range m {
			n += v
		}
	}
	return n
}

// Count returns the receipts of status and code.
func (c StatusCodes) Count(status, code string) int { return c[status][code] }

// Clone returns a deep copy.
func (c StatusCodes) Clone() StatusCodes {
	out := make(StatusCodes, len(c))
	for k, m := range c {
		out[k] = maps.Clone(m)
	}
	return out
}

// Stats are the simulator's counters (GET /stats).
type Stats struct {
	// Downward (to the hub).
	Sent          map[string]int `json:"sent"`          // first sends confirmed by the broker, by kind
	Resends       int            `json:"resends"`       // resends after a missing receipt
	PublishErrors int            `json:"publishErrors"` // publishes that failed (retried on schedule)
	Pending       int            `json:"pending"`       // messages awaiting a receipt
	Flagged       int            `json:"flagged"`       // messages without a receipt after the give-up time
	Withheld      int            `json:"withheld"`      // messages withheld by the gap fault, not sent (yet)
	Faults        map[string]int `json:"faults"`        // faults injected, by name
	// Receipts from the hub.
	ReceiptsReceived  StatusCodes `json:"receiptsReceived"`  // by status, code
	ReceiptsDropped   int         `json:"receiptsDropped"`   // by the lost-receipt fault
	ReceiptsUnmatched int         `json:"receiptsUnmatched"` // ref unknown
	ReceiptsInvalid   int         `json:"receiptsInvalid"`   // rejected by the envelope or contract checks
	// Upward (filings from the hub).
	FilingsReceived map[string]int `json:"filingsReceived"` // by kind, envelope steps 3+ passed
	ReceiptsSent    StatusCodes    `json:"receiptsSent"`    // by status, code
	Unanswered      map[string]int `json:"unanswered"`      // envelopes failing steps 1-2, by code
	Held            int            `json:"held"`            // filings held ahead of a gap
}

// counters are the live counters; Stats adds the derived ones.
type counters = Stats

func newCounters() counters {
	return Stats{
		Sent: map[string]int{}, Faults: map[string]int{},
		ReceiptsReceived: StatusCodes{}, FilingsReceived: map[string]int{},
		ReceiptsSent: StatusCodes{}, Unanswered: map[string]int{},
	}
}

// Stats returns a snapshot of the counters.
func (s *Sim) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Sent = maps.Clone(s.stats.Sent)
	st.Faults = maps.Clone(s.stats.Faults)
	st.ReceiptsReceived = s.stats.ReceiptsReceived.Clone()
	st.FilingsReceived = maps.Clone(s.stats.FilingsReceived)
	st.ReceiptsSent = s.stats.ReceiptsSent.Clone()
	st.Unanswered = maps.Clone(s.stats.Unanswered)
	st.Pending = len(s.pending)
	st.Flagged, st.Withheld = 0, 0
	for _, m := range s.out {
		if m.flagged {
			st.Flagged++
		}
		if m.withheld {
			st.Withheld++
		}
	}
	for _, ps := range s.persons {
		st.Held += len(ps.held)
	}
	return st
}
