package citysim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"

	"zhianhub/adapters/mpssim"
)

// Handler returns the control API:
//
//	GET  /stats          counters (Stats)
//	GET  /faults         fault probabilities in force
//	POST /faults         {"<fault>": {"probability": 0.1, "inject": 2}, ...}
//	POST /send           an Order object, possibly {} (missing fields generated): send it now
//	GET  /messages/{id}  an order sent and its receipt
//	GET  /feedback       the feedback received and how each was answered
//
// Faults: duplicate, reorder, badSignature, staleTimestamp, invalidPayload,
// lostReceipt (Faults). "inject" sends that many random orders with the
// fault (lostReceipt: drops that many of the next receipts). Errors are
// {"error": "..."} with status 400, 404 or 503 (no bus connection).
func (s *Sim) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, s.Stats()) })
	mux.HandleFunc("GET /faults", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"probabilities": s.FaultProbabilities()})
	})
	mux.HandleFunc("POST /faults", s.postFaults)
	mux.HandleFunc("POST /send", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		if len(body) == 0 {
			body = []byte("{}")
		}
		info, err := s.SendOrder(r.Context(), body, "")
		switch {
		case errors.Is(err, errNotConnected):
			writeError(w, http.StatusServiceUnavailable, err)
		case err != nil:
			writeError(w, http.StatusBadRequest, err)
		default:
			writeJSON(w, http.StatusOK, info)
		}
	})
	mux.HandleFunc("GET /messages/{id}", func(w http.ResponseWriter, r *http.Request) {
		m, ok := s.Message(r.PathValue("id"))
		if !ok {
			writeError(w, http.StatusNotFound, errors.New("no order with this id"))
			return
		}
		writeJSON(w, http.StatusOK, m)
	})
	mux.HandleFunc("GET /feedback", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"feedback": s.Feedback()})
	})
	return mux
}

func (s *Sim) postFaults(w http.ResponseWriter, r *http.Request) {
	var req map[mpssim.Fault]mpssim.FaultSetting
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("body: %w", err))
		return
	}
	for f, set := range req {
		p := 0.0
		if set.Probability != nil {
			p = *set.Probability
		}
		if err := checkFault(f, p); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
	}
	var injected []MessageInfo
	for _, f := range slices.Sorted(maps.Keys(req)) {
		set := req[f]
		if set.Probability != nil {
			_ = s.SetFault(f, *set.Probability)
		}
		for range set.Inject {
			if f == mpssim.FaultLostReceipt {
				s.mu.Lock()
				s.lostReceipts++
				s.mu.Unlock()
				continue
			}
			info, err := s.SendOrder(r.Context(), nil, f)
			if errors.Is(err, errNotConnected) {
				writeError(w, http.StatusServiceUnavailable, err)
				return
			}
			if err != nil {
				writeError(w, http.StatusBadRequest, err)
				return
			}
			injected = append(injected, info)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"probabilities": s.FaultProbabilities(), "injected": injected})
}

// SetFault sets the probability of f (0 turns it off).
func (s *Sim) SetFault(f mpssim.Fault, p float64) error {
	if err := checkFault(f, p); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p == 0 {
		delete(s.faults, f)
	} else {
		s.faults[f] = p
	}
	return nil
}

// FaultProbabilities returns the fault probabilities in force.
func (s *Sim) FaultProbabilities() map[mpssim.Fault]float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.faults)
}

// Stats returns a copy of the counters.
func (s *Sim) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.ReceiptsReceived = s.stats.ReceiptsReceived.Clone()
	st.ReceiptsSent = s.stats.ReceiptsSent.Clone()
	st.FeedbackReceived = maps.Clone(s.stats.FeedbackReceived)
	st.Unanswered = maps.Clone(s.stats.Unanswered)
	st.Pending = len(s.pending)
	return st
}

// Message returns an order sent, with its receipt.
func (s *Sim) Message(id string) (MessageInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.out[id]
	if !ok {
		return MessageInfo{}, false
	}
	info := o.info
	if info.Receipt != nil {
		r := *info.Receipt
		info.Receipt = &r
	}
	return info, true
}

// Feedback returns the feedback received (answered), in order.
func (s *Sim) Feedback() []Feedback {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.received)
}

// writeJSON answers compact JSON (deploy/run-demo.sh reads /send's answer
// with sed).
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}
