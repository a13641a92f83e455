package contracts

import "time"

// Enumerated values of the payloads.
const (
	IDTypeResidentCard = "111" // 居民身份证, checked per GB 11643-1999

	MeasureNotify = "notify" // 见面通知
	MeasureVerify = "verify" // 核查
	MeasureReport = "report" // 动态上报

	ItemIdentity = "identity"
	ItemAddress  = "address"
	ItemContact  = "contact"
	ItemStatus   = "status"

	StatusAccepted  = "ACCEPTED"
	StatusRejected  = "REJECTED"
	StatusDuplicate = "DUPLICATE"

	// Nationwide is the only member of Control.Regions of a nationwide control.
	Nationwide = "000000"
)

// Header is the ordering header of every payload except Receipt.
type Header struct {
	PersonNo string `json:"personNo"` // 重点人员编号, 20 digits
	Seq      int64  `json:"seq"`      // per (sender, personNo), from 1
}

// Ordering returns the ordering header; every payload but Receipt has it.
func (h Header) Ordering() Header { return h }

// Ordered is implemented by every payload type that carries a Header.
type Ordered interface{ Ordering() Header }

// Basis is the legal ground for listing, cancelling or controlling a person.
type Basis struct {
	DocNo      string    `json:"docNo"`      // 审批文书号
	ApprovedBy string    `json:"approvedBy"` // 审批单位
	ApprovedAt time.Time `json:"approvedAt"`
	Legal      string    `json:"legal"` // 法律依据
}

// Person is the payload of keyperson.register. Dates (BirthDate, ReviewBy)
// are "YYYY-MM-DD" strings; optional fields are omitted when empty.
type Person struct {
	Header
	IDType       string    `json:"idType"`
	IDNo         string    `json:"idNo"`
	Name         string    `json:"name"`
	Sex          string    `json:"sex"`
	BirthDate    string    `json:"birthDate"`
	HukouRegion  string    `json:"hukouRegion"`
	HukouAddr    string    `json:"hukouAddr,omitempty"`
	ResidRegion  string    `json:"residRegion,omitempty"`
	ResidAddr    string    `json:"residAddr,omitempty"`
	Categories   []string  `json:"categories"`
	Basis        Basis     `json:"basis"`
	ReviewBy     string    `json:"reviewBy"`
	Unit         string    `json:"unit"`
	Officer      string    `json:"officer"`
	RegisteredAt time.Time `json:"registeredAt"`
}

// PersonChanges holds the Person fields a Change sets; nil means unchanged.
// idType and idNo cannot change.
type PersonChanges struct {
	Name         *string    `json:"name,omitempty"`
	Sex          *string    `json:"sex,omitempty"`
	BirthDate    *string    `json:"birthDate,omitempty"`
	HukouRegion  *string    `json:"hukouRegion,omitempty"`
	HukouAddr    *string    `json:"hukouAddr,omitempty"`
	ResidRegion  *string    `json:"residRegion,omitempty"`
	ResidAddr    *string    `json:"residAddr,omitempty"`
	Categories   []string   `json:"categories,omitempty"`
	Basis        *Basis     `json:"basis,omitempty"`
	ReviewBy     *string    `json:"reviewBy,omitempty"`
	Unit         *string    `json:"unit,omitempty"`
	Officer      *string    `json:"officer,omitempty"`
	RegisteredAt *time.Time `json:"registeredAt,omitempty"`
}

// Change is the payload of keyperson.change.
type Change struct {
	Header
	Changes   PersonChanges `json:"changes"`
	Reason    string        `json:"reason"`
	ChangedAt time.Time     `json:"changedAt"`
}

// Cancel is the payload of keyperson.cancel.
type Cancel struct {
	Header
	Reason      string    `json:"reason"`
	Basis       Basis     `json:"basis"`
	CancelledAt time.Time `json:"cancelledAt"`
}

// Control is the payload of keyperson.control.
type Control struct {
	Header
	ControlNo string    `json:"controlNo"`
	Level     int       `json:"level"` // 1 high … 3 low
	Measures  []string  `json:"measures"`
	Regions   []string  `json:"regions"` // or exactly [Nationwide]
	ValidFrom time.Time `json:"validFrom"`
	ValidTo   time.Time `json:"validTo"`
	Basis     Basis     `json:"basis"`
}

// Release is the payload of keyperson.release.
type Release struct {
	Header
	ControlNo  string    `json:"controlNo"`
	Reason     string    `json:"reason"`
	ReleasedAt time.Time `json:"releasedAt"`
}

// Task is the payload of keyperson.task.
type Task struct {
	Header
	TaskNo       string    `json:"taskNo"`
	Items        []string  `json:"items"`
	AssignedUnit string    `json:"assignedUnit"`
	Deadline     time.Time `json:"deadline"`
	Note         string    `json:"note,omitempty"`
}

// TaskSign is the payload of keyperson.task.sign.
type TaskSign struct {
	Header
	TaskNo   string    `json:"taskNo"`
	Unit     string    `json:"unit"`
	Officer  string    `json:"officer"`
	SignedAt time.Time `json:"signedAt"`
}

// Receipt is the payload of receipt.
type Receipt struct {
	Ref    string    `json:"ref"`    // id of the message answered
	Status string    `json:"status"` // StatusAccepted, StatusRejected or StatusDuplicate
	Code   string    `json:"code"`   // "0000" or "Exxx"
	Reason string    `json:"reason"` // may be "" when Code is "0000"
	At     time.Time `json:"at"`
}
