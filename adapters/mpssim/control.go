package mpssim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// FaultSetting is one entry of a POST /faults request: Probability (when
// present) sets the probability of the fault, Inject (when positive)
// injects it that many times at once.
type FaultSetting struct {
	Probability *float64 `json:"probability,omitempty"`
	Inject      int      `json:"inject,omitempty"`
}

// FaultsResponse answers GET and POST /faults.
type FaultsResponse struct {
	Probabilities       map[Fault]float64 `json:"probabilities"`
	PendingLostReceipts int               `json:"pendingLostReceipts"`
	// Injected lists the messages of the injections of a POST.
	Injected []MessageInfo `json:"injected,omitempty"`
}

// SendRequest is the body of POST /send.
type SendRequest struct {
	Kind    string          `json:"kind"`
	Payload json.RawMessage `json:"payload"`
}

// Handler returns the control API:
//
//	GET  /stats          counters (Stats)
//	GET  /faults         fault probabilities in force
//	POST /faults         {"<fault>": {"probability": 0.1, "inject": 2}, ...}
//	POST /send           {"kind": ..., "payload": {...}}: send one message
//	GET  /messages/{id}  a downward message and its receipt
//
// Faults: duplicate, reorder, gap, badSignature, unknownKey,
// staleTimestamp, invalidPayload, lostReceipt (see AllFaults). Errors are
// {"error": "..."} with status 400 (bad request), 404, or 503 (no bus
// connection).
func (s *Sim) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Stats())
	})
	mux.HandleFunc("GET /faults", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.faultsResponse(nil))
	})
	mux.HandleFunc("POST /faults", s.postFaults)
	mux.HandleFunc("POST /send", s.postSend)
	mux.HandleFunc("GET /messages/{id}", func(w http.ResponseWriter, r *http.Request) {
		m, ok := s.Message(r.PathValue("id"))
		if !ok {
			writeError(w, http.StatusNotFound, errors.New("no downward message with this id"))
			return
		}
		writeJSON(w, http.StatusOK, m)
	})
	return mux
}

func (s *Sim) faultsResponse(injected []MessageInfo) FaultsResponse {
	return FaultsResponse{Probabilities: s.FaultProbabilities(), PendingLostReceipts: s.PendingLostReceipts(), Injected: injected}
}

func (s *Sim) postFaults(w http.ResponseWriter, r *http.Request) {
	var req map[Fault]FaultSetting
	if err := decodeBody(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	// Check everything before changing anything.
	for f, set := range req {
		p := 0.0
		if set.Probability != nil {
			p = *set.Probability
		}
		if err := checkFault(f, p); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		if set.Inject < 0 || set.Inject > 1000 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("fault %s: inject %d is not in 0..1000", f, set.Inject))
			return
		}
	}
	var injected []MessageInfo
	for _, f := range AllFaults() {
		set, ok := req[f]
		if !ok {
			continue
		}
		if set.Probability != nil {
			_ = s.SetFault(f, *set.Probability)
		}
		if set.Inject > 0 {
			infos, err := s.Inject(r.Context(), f, set.Inject)
			injected = append(injected, infos...)
			if err != nil {
				writeError(w, statusOf(err), fmt.Errorf("fault %s: %w", f, err))
				return
			}
		}
	}
	writeJSON(w, http.StatusOK, s.faultsResponse(injected))
}

func (s *Sim) postSend(w http.ResponseWriter, r *http.Request) {
	var req SendRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if s.publisher() == nil {
		writeError(w, http.StatusServiceUnavailable, errNotConnected)
		return
	}
	res, err := s.Send(r.Context(), req.Kind, req.Payload)
	if err != nil {
		if res.ID == "" {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		// Tracked: it is resent on the resend schedule.
		writeJSON(w, http.StatusBadGateway, struct {
			SendResult
			Error string `json:"error"`
		}{res, err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func statusOf(err error) int {
	if errors.Is(err, errNotConnected) {
		return http.StatusServiceUnavailable
	}
	return http.StatusBadGateway
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 4<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}
