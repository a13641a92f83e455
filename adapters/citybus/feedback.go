package citybus

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"zhianhub/contracts"
	"zhianhub/routes"
	"zhianhub/store"
	"zhianhub/store/audit"
	"zhianhub/store/dispatch"
)

// Feedbacks files feedback to the city bureau: the Go API for the hub's
// modules (warnings, tasks, leads, dispatch). Every feedback goes through
// the city bus's routes.Filing, which validates it, records it
// (store/dispatch) and puts feedback.<refType> in the outbox in one
// transaction; the shared relay seals, publishes and resends it until its
// receipt.
type Feedbacks struct {
	// Filing is the city bus's filing service (FilingConfig with
	// Ordering routes.RefOrdering, transforms.CityChecker, a
	// *dispatch.Store as Registry).
	Filing *routes.Filing
	// Numbers gives the feedback numbers (dispatch.NextFeedbackNo).
	Numbers store.Querier
	// Now is the clock of feedbackNo and of a missing At; default time.Now.
	Now func() time.Time
}

// FeedbackRequest is one feedback. FeedbackNo and Seq are assigned.
type FeedbackRequest struct {
	RefType     string // contracts.RefWarning, RefTask, RefDispatch or RefLead
	RefNo       string
	Unit        string
	Officer     string
	Result      string // contracts.ResultDone …
	Detail      string
	Attachments []contracts.Attachment // nil = none
	At          time.Time              // zero = now
	// Corr is the id of the message this feedback answers, if any (the
	// dispatch.order of a dispatch feedback).
	Corr string
	// Actor is who files (user id), for the audit; CorrelationID ties the
	// filing to its cause.
	Actor         string
	CorrelationID string
}

// FileFeedback files one feedback; refusals are coded errors
// (envelope.CodeOf: E102 an unknown refType, E120 the payload, E130/E131
// the state of the order).
func (f *Feedbacks) FileFeedback(ctx context.Context, req FeedbackRequest) (routes.FileResult, error) {
	if f.Filing == nil || f.Numbers == nil {
		return routes.FileResult{}, errors.New("citybus: Feedbacks needs Filing and Numbers")
	}
	fr, err := f.request(ctx, f.Numbers, req)
	if err != nil {
		return routes.FileResult{}, err
	}
	return f.Filing.File(ctx, fr)
}

// FileFeedbackTx files one feedback in the caller's transaction (a
// warning's disposition and its report to the city bureau commit
// together). It returns the filing's audit entry for the caller to stage
// in tx; after the commit, call Filing.Notify.
func (f *Feedbacks) FileFeedbackTx(ctx context.Context, tx pgx.Tx, req FeedbackRequest) (routes.FileResult, audit.Entry, error) {
	if f.Filing == nil {
		return routes.FileResult{}, audit.Entry{}, errors.New("citybus: Feedbacks needs Filing")
	}
	fr, err := f.request(ctx, tx, req)
	if err != nil {
		return routes.FileResult{}, audit.Entry{}, err
	}
	return f.Filing.FileTx(ctx, tx, fr)
}

// request numbers the feedback and builds its filing.
func (f *Feedbacks) request(ctx context.Context, q store.Querier, req FeedbackRequest) (routes.FileRequest, error) {
	now := time.Now
	if f.Now != nil {
		now = f.Now
	}
	no, err := dispatch.NextFeedbackNo(ctx, q, now())
	if err != nil {
		return routes.FileRequest{}, err
	}
	at := req.At
	if at.IsZero() {
		at = now()
	}
	atts := req.Attachments
	if atts == nil {
		atts = []contracts.Attachment{}
	}
	payload, err := json.Marshal(map[string]any{
		"feedbackNo": no, "refType": req.RefType, "refNo": req.RefNo, "unit": req.Unit, "officer": req.Officer,
		"result": req.Result, "detail": req.Detail, "attachments": atts, "at": at.In(shanghai).Format(time.RFC3339),
	})
	if err != nil {
		return routes.FileRequest{}, err
	}
	return routes.FileRequest{Kind: contracts.FeedbackKind(req.RefType), Payload: payload,
		Corr: req.Corr, Actor: req.Actor, CorrelationID: req.CorrelationID}, nil
}

var shanghai = time.FixedZone("CST", 8*3600)
