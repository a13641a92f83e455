package contracts

import "slices"

// Payload kinds of the Ministry business bus.
const (
	KindRegister = "keyperson.register"  // 登记, payload Person
	KindChange   = "keyperson.change"    // 变更, payload Change
	KindCancel   = "keyperson.cancel"    // 注销, payload Cancel
	KindControl  = "keyperson.control"   // 布控, payload Control
	KindRelease  = "keyperson.release"   // 解控, payload Release
	KindTask     = "keyperson.task"      // 核实登记任务下发, payload Task
	KindTaskSign = "keyperson.task.sign" // 任务签收, payload TaskSign
	KindReceipt  = "receipt"             // 回执, payload Receipt
)

// kinds lists every kind in the order of the spec table.
var kinds = [...]string{
	KindRegister, KindChange, KindCancel, KindControl,
	KindRelease, KindTask, KindTaskSign, KindReceipt,
}

// Kinds returns every payload kind in the order of the spec table.
func Kinds() []string { return slices.Clone(kinds[:]) }

// Known reports whether kind is a payload kind of the Ministry bus.
func Known(kind string) bool { return slices.Contains(kinds[:], kind) }
