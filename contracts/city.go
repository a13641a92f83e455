package contracts

import (
	"fmt"
	"slices"
	"time"
)

// Payload kinds of the city-bureau feedback bus (shared/specs/feedback-bus.md).
const (
	KindFeedbackWarning  = "feedback.warning"  // 预警处置反馈, payload Feedback (refType warning)
	KindFeedbackTask     = "feedback.task"     // 核查任务反馈, payload Feedback (refType task)
	KindFeedbackDispatch = "feedback.dispatch" // 指挥调度反馈, payload Feedback (refType dispatch)
	KindFeedbackLead     = "feedback.lead"     // 线索处置反馈, payload Feedback (refType lead)
	KindDispatchOrder    = "dispatch.order"    // 调度指令, payload Order
	// KindReceipt (回执) is shared with the Ministry bus.
)

// Feedback refType values: the kind of a feedback is "feedback." + refType.
const (
	RefWarning  = "warning"
	RefTask     = "task"
	RefDispatch = "dispatch"
	RefLead     = "lead"
)

// Feedback results.
const (
	ResultDone        = "done"        // 已处置
	ResultUnverified  = "unverified"  // 无法核实
	ResultFalseAlarm  = "false_alarm" // 误报
	ResultTransferred = "transferred" // 移交
	ResultInProgress  = "in_progress" // 处置中
)

var (
	cityKinds = [...]string{KindFeedbackWarning, KindFeedbackTask, KindFeedbackDispatch, KindFeedbackLead, KindDispatchOrder, KindReceipt}
	refTypes  = [...]string{RefWarning, RefTask, RefDispatch, RefLead}
	results   = [...]string{ResultDone, ResultUnverified, ResultFalseAlarm, ResultTransferred, ResultInProgress}
)

// CityKinds returns every payload kind of the city bus in the order of the
// spec table.
func CityKinds() []string { return slices.Clone(cityKinds[:]) }

// CityKnown reports whether kind is a payload kind of the city bus.
func CityKnown(kind string) bool { return slices.Contains(cityKinds[:], kind) }

// CityKindsToHub returns the kinds that flow from the city bureau to the
// hub: dispatch.order and receipt (feedback.* flows the other way only; the
// hub's opener answers it E102).
func CityKindsToHub() []string { return []string{KindDispatchOrder, KindReceipt} }

// RefTypes returns the Feedback refType values.
func RefTypes() []string { return slices.Clone(refTypes[:]) }

// Results returns the Feedback result values.
func Results() []string { return slices.Clone(results[:]) }

// FeedbackKind returns the kind of a feedback of refType.
func FeedbackKind(refType string) string { return "feedback." + refType }

// Sequenced is implemented by every payload that takes a place in a
// sequence: its ordering key (personNo on the Ministry bus, refNo on the
// city bus) and its seq. The inbound route and the filing service use it
// without knowing the bus.
type Sequenced interface {
	SeqKey() (key string, seq int64)
}

// SeqKey implements Sequenced.
func (h Header) SeqKey() (string, int64) { return h.PersonNo, h.Seq }

// RefHeader is the ordering header of the city-bus payloads.
type RefHeader struct {
	RefNo string `json:"refNo"` // the warning, task, order or lead number
	Seq   int64  `json:"seq"`   // per (sender, refNo), from 1
}

// SeqKey implements Sequenced.
func (h RefHeader) SeqKey() (string, int64) { return h.RefNo, h.Seq }

// Attachment is a file that stays in the hub's file store; the bus
// carries its SM3 digest.
type Attachment struct {
	Name string `json:"name"`
	Size int64  `json:"size"` // bytes
	SM3  string `json:"sm3"`  // 64 lower-case hex characters
}

// Feedback is the payload of feedback.<refType>.
type Feedback struct {
	FeedbackNo string `json:"feedbackNo"`
	RefType    string `json:"refType"`
	RefHeader
	Unit        string       `json:"unit"`
	Officer     string       `json:"officer"`
	Result      string       `json:"result"`
	Detail      string       `json:"detail"`
	Attachments []Attachment `json:"attachments"`
	At          time.Time    `json:"at"`
}

// Order is the payload of dispatch.order; RefNo equals OrderNo.
type Order struct {
	OrderNo string `json:"orderNo"`
	RefHeader
	Title       string    `json:"title"`
	Content     string    `json:"content"`
	Level       int       `json:"level"` // 1 high … 3 low
	TargetUnits []string  `json:"targetUnits"`
	Deadline    time.Time `json:"deadline"`
	IssuedBy    string    `json:"issuedBy"` // officer number
}

// ValidateCityPayload decodes payload, the JSON document of a city-bus
// message of kind, strictly and checks every rule of feedback-bus.md (and
// the Receipt rules of mps-bus.md). It returns *Feedback, *Order or
// *Receipt, or an error as ValidatePayload does: ErrUnknownKind (E102),
// ErrNotObject (E100) or a *FieldError (E120).
func (v *Validator) ValidateCityPayload(kind string, payload []byte) (any, error) {
	if !CityKnown(kind) {
		return nil, fmt.Errorf("%w: %.64q", ErrUnknownKind, kind)
	}
	obj, err := parsePayload(payload)
	if err != nil {
		return nil, err
	}
	switch kind {
	case KindDispatchOrder:
		return result(v.order(obj))
	case KindReceipt:
		return result(v.receipt(obj))
	default:
		return result(v.feedback(obj, kind[len("feedback."):]))
	}
}

var feedbackFields = []string{"feedbackNo", "refType", "refNo", "seq", "unit", "officer", "result", "detail", "attachments", "at"}

func (v *Validator) feedback(obj *object, refType string) (*Feedback, *FieldError) {
	f := v.newFields(obj, "", feedbackFields)
	fb := &Feedback{}
	fb.FeedbackNo = f.digits("feedbackNo", 20, 20)
	fb.RefType = f.check("refType", true, func(s string) string { return checkEnum(s, refTypes[:]...) })
	if f.err == nil && fb.RefType != refType {
		f.fail(CodeSchema, "refType", fmt.Sprintf("应为 %s（与消息类型 feedback.%s 一致）", refType, refType))
	}
	fb.RefHeader = f.refHeader()
	fb.Unit = f.digits("unit", 12, 12)
	fb.Officer = f.digits("officer", 6, 8)
	fb.Result = f.check("result", true, func(s string) string { return checkEnum(s, results[:]...) })
	fb.Detail = f.text("detail", 1, 2000, multiLine, true)
	fb.Attachments = f.attachments("attachments")
	fb.At = f.instant("at")
	if f.err != nil {
		return nil, f.err
	}
	return fb, nil
}

var orderFields = []string{"orderNo", "refNo", "seq", "title", "content", "level", "targetUnits", "deadline", "issuedBy"}

func (v *Validator) order(obj *object) (*Order, *FieldError) {
	f := v.newFields(obj, "", orderFields)
	o := &Order{}
	o.OrderNo = f.digits("orderNo", 20, 20)
	o.RefHeader = f.refHeader()
	if f.err == nil && o.RefNo != o.OrderNo {
		f.fail(CodeSchema, "refNo", "应与 orderNo 相同")
	}
	o.Title = f.text("title", 1, 100, singleLine, true)
	o.Content = f.text("content", 1, 2000, multiLine, true)
	o.Level = int(f.integer("level", 1, 3))
	o.TargetUnits = f.list("targetUnits", true, 1, 64, func(s string) string { return checkDigits(s, 12, 12) })
	o.Deadline = f.instant("deadline")
	o.IssuedBy = f.digits("issuedBy", 6, 8)
	if f.err != nil {
		return nil, f.err
	}
	return o, nil
}

func (f *fields) refHeader() RefHeader {
	return RefHeader{
		RefNo: f.check("refNo", true, checkRefNo),
		Seq:   f.integer("seq", 1, maxSeq),
	}
}

// checkRefNo checks a reference number: 1-32 visible ASCII characters
// (no space): warning, task, order and lead numbers of the hub's modules
// and of the city bureau are such identifiers.
func checkRefNo(s string) string {
	if len(s) < 1 || len(s) > 32 {
		return fmt.Sprintf("长度应为 1-32 个字符，实为 %d 个", len([]rune(s)))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '!' || s[i] > '~' {
			return "只能包含可见 ASCII 字符（不含空格）"
		}
	}
	return ""
}

var attachmentFields = []string{"name", "size", "sm3"}

// attachments reads 0-16 attachments, each {name, size, sm3}.
func (f *fields) attachments(name string) []Attachment {
	v, ok := f.value(name, true)
	if !ok {
		return nil
	}
	arr, ok := v.([]any)
	if !ok {
		f.fail(CodeSchema, f.at(name), "应为数组，实为"+typeName(v))
		return nil
	}
	if len(arr) > 16 {
		f.fail(CodeSchema, f.at(name), fmt.Sprintf("应有 0-16 项，实有 %d 项", len(arr)))
		return nil
	}
	out := make([]Attachment, 0, len(arr))
	for i, e := range arr {
		at := fmt.Sprintf("%s[%d]", f.at(name), i)
		obj, ok := e.(*object)
		if !ok {
			f.fail(CodeSchema, at, "应为对象，实为"+typeName(e))
			return nil
		}
		g := f.v.newFields(obj, at, attachmentFields)
		a := Attachment{
			Name: g.text("name", 1, 255, singleLine, true),
			Size: g.integer("size", 0, maxSeq),
			SM3:  g.check("sm3", true, checkHex64),
		}
		if g.err != nil {
			f.err = g.err
			return nil
		}
		out = append(out, a)
	}
	return out
}

func checkHex64(s string) string {
	if len(s) != 64 {
		return "应为 64 位小写十六进制 SM3 摘要"
	}
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return "应为 64 位小写十六进制 SM3 摘要"
		}
	}
	return ""
}
