package warning

import (
	"errors"
	"fmt"
	"slices"
)

// States of a warning.
const (
	Issued      = "issued"      // 已下发: awaiting the responsible unit's signature
	Signed      = "signed"      // 已签收
	InProgress  = "in_progress" // 处置中
	Done        = "done"        // 已办结
	FalseAlarm  = "false_alarm" // 误报
	Transferred = "transferred" // 已移交: awaiting the new unit's signature
)

// States lists every state, in lifecycle order.
var States = []string{Issued, Signed, InProgress, Done, FalseAlarm, Transferred}

// StateNames are the Chinese names of the states.
var StateNames = map[string]string{
	Issued: "已下发", Signed: "已签收", InProgress: "处置中", Done: "已办结", FalseAlarm: "误报", Transferred: "已移交",
}

// Open reports whether a warning in state still awaits its handling (and
// so can become overdue).
func Open(state string) bool { return state != Done && state != FalseAlarm }

// Actions of the lifecycle.
const (
	ActSign     = "sign"     // 签收
	ActStart    = "start"    // 开始处置
	ActFinish   = "finish"   // 反馈处置结果
	ActTransfer = "transfer" // 移交
)

var actionNames = map[string]string{ActSign: "签收", ActStart: "开始处置", ActFinish: "反馈处置结果", ActTransfer: "移交"}

// transitions: action → the states it is allowed from. A transferred
// warning is signed by its new unit and then follows the same path; done
// and false_alarm are final.
var transitions = map[string][]string{
	ActSign:     {Issued, Transferred},
	ActStart:    {Signed},
	ActFinish:   {InProgress},
	ActTransfer: {Issued, Signed, InProgress, Transferred},
}

// Results of a finish: the result vocabulary of the warning.feedback event.
const (
	ResultVerified   = "verified"    // 已核实
	ResultHandled    = "handled"     // 已处置
	ResultNotFound   = "not-found"   // 未发现
	ResultFalseAlarm = "false-alarm" // 误报
)

// Results lists the results of a finish.
var Results = []string{ResultVerified, ResultHandled, ResultNotFound, ResultFalseAlarm}

// ResultNames are the Chinese names of the results.
var ResultNames = map[string]string{
	ResultVerified: "已核实", ResultHandled: "已处置", ResultNotFound: "未发现", ResultFalseAlarm: "误报",
}

// Errors.
var (
	// ErrNotFound reports an unknown warning (or one outside the caller's
	// scope: the two are not told apart).
	ErrNotFound = errors.New("warning: not found")
	// ErrConflict is wrapped by every *StateError.
	ErrConflict = errors.New("warning: state conflict")
	// ErrNotResponsible reports a step by a caller who sees the warning
	// but whose scope does not cover its responsible unit now.
	ErrNotResponsible = errors.New("warning: the caller's unit is not responsible")
	// ErrInvalid wraps a refused input; the error's text after the prefix
	// is the Chinese reason (see Reason).
	ErrInvalid = errors.New("warning: invalid")
)

// StateError is a step the state machine refuses.
type StateError struct {
	State, Action string
	// Reason is the Chinese message.
	Reason string
}

func (e *StateError) Error() string {
	return fmt.Sprintf("warning: %s not allowed in state %s", e.Action, e.State)
}

// Unwrap makes errors.Is(err, ErrConflict) true.
func (e *StateError) Unwrap() error { return ErrConflict }

// InvalidError is a refused input with its Chinese reason.
type InvalidError struct{ Reason string }

func (e *InvalidError) Error() string { return "warning: invalid: " + e.Reason }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Unwrap() error { return ErrInvalid }

func invalid(format string, args ...any) error {
	return &InvalidError{Reason: fmt.Sprintf(format, args...)}
}

// Next returns the state after action in state; a finish needs its result
// (one of Results). A refused step is a *StateError (or an *InvalidError
// for an unknown action or result).
func Next(state, action, result string) (string, error) {
	from, ok := transitions[action]
	if !ok {
		return "", invalid("未知的操作 %q", action)
	}
	if !slices.Contains(from, state) {
		return "", &StateError{State: state, Action: action,
			Reason: fmt.Sprintf("预警当前状态为「%s」，不能%s", StateNames[state], actionNames[action])}
	}
	switch action {
	case ActSign:
		return Signed, nil
	case ActStart:
		return InProgress, nil
	case ActTransfer:
		return Transferred, nil
	}
	switch result {
	case ResultFalseAlarm:
		return FalseAlarm, nil
	case ResultVerified, ResultHandled, ResultNotFound:
		return Done, nil
	}
	return "", invalid("result：须为 verified（已核实）、handled（已处置）、not-found（未发现）或 false-alarm（误报）")
}

// Feedback results of the city feedback bus (feedback-bus.md).
const (
	FeedbackDone        = "done"
	FeedbackUnverified  = "unverified"
	FeedbackFalseAlarm  = "false_alarm"
	FeedbackTransferred = "transferred"
	FeedbackInProgress  = "in_progress"
)

// FeedbackResult maps a final step to the city bus's result: verified and
// handled → done, not-found → unverified, false-alarm → false_alarm, a
// transfer → transferred. Other steps are not final and give "".
func FeedbackResult(action, result string) string {
	switch {
	case action == ActTransfer:
		return FeedbackTransferred
	case action != ActFinish:
		return ""
	case result == ResultFalseAlarm:
		return FeedbackFalseAlarm
	case result == ResultNotFound:
		return FeedbackUnverified
	}
	return FeedbackDone
}
