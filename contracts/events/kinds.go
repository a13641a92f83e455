package events

// Event kinds published by the internal modules through zhian.ingress.
const (
	KindWarningIssued    = "warning.issued"    // 预警下发
	KindWarningSigned    = "warning.signed"    // 预警签收
	KindWarningFeedback  = "warning.feedback"  // 预警反馈
	KindLeadRegistered   = "lead.registered"   // 线索登记
	KindDispatchOrder    = "dispatch.order"    // 指令下发
	KindDispatchFeedback = "dispatch.feedback" // 指令反馈
	KindPushDelivered    = "push.delivered"    // 推送送达
)

// Event kinds published by the hub itself for applied Ministry-bus messages
// (routes: redactedEvent); modules may subscribe to them, never publish them.
const (
	KindKeyPersonRegister = "keyperson.register"
	KindKeyPersonChange   = "keyperson.change"
	KindKeyPersonCancel   = "keyperson.cancel"
	KindKeyPersonControl  = "keyperson.control"
	KindKeyPersonRelease  = "keyperson.release"
	KindKeyPersonTask     = "keyperson.task"
	KindKeyPersonTaskSign = "keyperson.task.sign"
)

func defs() []Event {
	return []Event{
		{
			Kind: KindWarningIssued, Summary: "预警下发：研判模块向责任单位下发预警", Module: true,
			Data: object("", obj{
				"warningId": serialNo("预警编号，20 位数字"),
				"level":     intRange(1, 4, "预警级别：1 红、2 橙、3 黄、4 蓝"),
				"category":  category,
				"title":     text(1, 100, false, "预警标题"),
				"content":   text(0, 1000, true, "预警内容（不得含身份证号、姓名、住址）"),
				"personNo":  personNo,
				"unit":      unitField("责任单位代码，12 位"),
				"deadline":  dateTime("签收及反馈时限"),
				"issuedAt":  dateTime("下发时间"),
			}, "warningId", "level", "category", "title", "unit", "deadline", "issuedAt"),
			Example: `{"messageId":"0193a0b4-6c2e-7d41-8a55-2f3c4d5e6f70","kind":"warning.issued","from":"analysis","occurredAt":"2026-11-27T09:30:00.000+08:00","data":{"warningId":"31000020261127000001","level":2,"category":"0301","title":"重点人员异常聚集预警（测试）","content":"请核实并反馈（测试数据）","personNo":"32010620261126000017","unit":"310104000000","deadline":"2026-11-27T17:30:00.000+08:00","issuedAt":"2026-11-27T09:30:00.000+08:00"}}`,
		},
		{
			Kind: KindWarningSigned, Summary: "预警签收：责任单位签收预警", Module: true,
			Data: object("", obj{
				"warningId": serialNo("预警编号"),
				"unit":      unitField("签收单位代码"),
				"officer":   officerField,
				"signedAt":  dateTime("签收时间"),
			}, "warningId", "unit", "officer", "signedAt"),
			Example: `{"messageId":"0193a0b5-0000-7000-8000-000000000001","kind":"warning.signed","from":"portal","occurredAt":"2026-11-27T09:45:00.000+08:00","data":{"warningId":"31000020261127000001","unit":"310104000000","officer":"1023456","signedAt":"2026-11-27T09:45:00.000+08:00"}}`,
		},
		{
			Kind: KindWarningFeedback, Summary: "预警反馈：责任单位反馈处置结果", Module: true,
			Data: object("", obj{
				"warningId":  serialNo("预警编号"),
				"unit":       unitField("反馈单位代码"),
				"officer":    officerField,
				"result":     enum("处置结果：verified 已核实、handled 已处置、not-found 未发现、false-alarm 误报", "verified", "handled", "not-found", "false-alarm"),
				"content":    text(1, 1000, true, "反馈说明"),
				"feedbackAt": dateTime("反馈时间"),
			}, "warningId", "unit", "officer", "result", "content", "feedbackAt"),
			Example: `{"messageId":"0193a0b6-0000-7000-8000-000000000002","kind":"warning.feedback","from":"portal","occurredAt":"2026-11-27T15:00:00.000+08:00","data":{"warningId":"31000020261127000001","unit":"310104000000","officer":"1023456","result":"verified","content":"已现场核实，无异常（测试数据）","feedbackAt":"2026-11-27T15:00:00.000+08:00"}}`,
		},
		{
			Kind: KindLeadRegistered, Summary: "线索登记：登记一条治安线索", Module: true,
			Data: object("", obj{
				"leadId":       serialNo("线索编号，20 位数字"),
				"source":       enum("线索来源：hotline 110 报警、walk-in 来访、online 网上举报、patrol 巡逻发现、transfer 移交、other 其他", "hotline", "walk-in", "online", "patrol", "transfer", "other"),
				"category":     category,
				"content":      text(1, 2000, true, "线索内容"),
				"region":       countyCode,
				"unit":         unitField("登记单位代码"),
				"officer":      officerField,
				"registeredAt": dateTime("登记时间"),
			}, "leadId", "source", "category", "content", "unit", "officer", "registeredAt"),
			Example: `{"messageId":"0193a0b7-0000-7000-8000-000000000003","kind":"lead.registered","from":"leads","occurredAt":"2026-11-27T10:05:00.000+08:00","data":{"leadId":"31010420261127000042","source":"hotline","category":"0105","content":"群众反映某小区夜间有可疑人员聚集（测试数据）","region":"310104","unit":"310104000000","officer":"1023456","registeredAt":"2026-11-27T10:05:00.000+08:00"}}`,
		},
		{
			Kind: KindDispatchOrder, Summary: "指令下发：指挥调度模块向单位下发处置指令", Module: true,
			Data: object("", obj{
				"orderId":   serialNo("指令编号，20 位数字"),
				"priority":  intRange(1, 3, "优先级：1 紧急、2 重要、3 一般"),
				"title":     text(1, 100, false, "指令标题"),
				"content":   text(1, 2000, true, "指令内容"),
				"unit":      unitField("承办单位代码"),
				"warningId": serialNo("关联预警编号（可选）"),
				"leadId":    serialNo("关联线索编号（可选）"),
				"deadline":  dateTime("办结时限"),
				"issuedAt":  dateTime("下发时间"),
			}, "orderId", "priority", "title", "content", "unit", "deadline", "issuedAt"),
			Example: `{"messageId":"0193a0b8-0000-7000-8000-000000000004","kind":"dispatch.order","from":"dispatch","occurredAt":"2026-11-27T10:20:00.000+08:00","data":{"orderId":"31000020261127000007","priority":2,"title":"核查线索（测试）","content":"请于时限内核查并反馈（测试数据）","unit":"310104000000","leadId":"31010420261127000042","deadline":"2026-11-28T10:20:00.000+08:00","issuedAt":"2026-11-27T10:20:00.000+08:00"}}`,
		},
		{
			Kind: KindDispatchFeedback, Summary: "指令反馈：承办单位反馈指令办理情况", Module: true,
			Data: object("", obj{
				"orderId":    serialNo("指令编号"),
				"unit":       unitField("承办单位代码"),
				"officer":    officerField,
				"status":     enum("办理状态：accepted 已接收、in-progress 办理中、completed 已办结、unable 无法办理", "accepted", "in-progress", "completed", "unable"),
				"content":    text(0, 2000, true, "办理说明"),
				"feedbackAt": dateTime("反馈时间"),
			}, "orderId", "unit", "officer", "status", "feedbackAt"),
			Example: `{"messageId":"0193a0b9-0000-7000-8000-000000000005","kind":"dispatch.feedback","from":"portal","occurredAt":"2026-11-27T16:00:00.000+08:00","data":{"orderId":"31000020261127000007","unit":"310104000000","officer":"1023456","status":"completed","content":"已核查完毕（测试数据）","feedbackAt":"2026-11-27T16:00:00.000+08:00"}}`,
		},
		{
			Kind: KindPushDelivered, Summary: "推送送达：消息推送模块确认通知已送达", Module: true,
			Data: object("", obj{
				"pushId":      obj{"type": "string", "pattern": uuidPattern, "description": "推送标识，UUID"},
				"channel":     enum("推送渠道：portal 门户、app 移动警务、sms 短信", "portal", "app", "sms"),
				"refKind":     enum("被推送事件的类型", KindWarningIssued, KindDispatchOrder, KindKeyPersonTask, KindKeyPersonControl),
				"refId":       obj{"type": "string", "pattern": uuidPattern, "description": "被推送事件的 messageId"},
				"unit":        unitField("接收单位代码"),
				"officer":     officerField,
				"deliveredAt": dateTime("送达时间"),
			}, "pushId", "channel", "refKind", "refId", "unit", "deliveredAt"),
			Example: `{"messageId":"0193a0ba-0000-7000-8000-000000000006","kind":"push.delivered","from":"push","occurredAt":"2026-11-27T09:31:00.000+08:00","data":{"pushId":"0193a0ba-1111-7000-8000-000000000006","channel":"app","refKind":"warning.issued","refId":"0193a0b4-6c2e-7d41-8a55-2f3c4d5e6f70","unit":"310104000000","officer":"1023456","deliveredAt":"2026-11-27T09:31:00.000+08:00"}}`,
		},
	}
}

// Key-person data: the payload of the Ministry message as validated by
// package contracts, without idNo, name, hukouAddr and residAddr; in a
// change, a changed name or address is "***". Nested values keep the shape
// the Ministry contract gave them and are described loosely here.
var (
	seqField    = obj{"type": "integer", "minimum": 1, "maximum": 9007199254740991, "description": "该人员消息序号"}
	basisField  = obj{"type": "object", "description": "审批依据（文书号、审批单位、审批时间、法律依据）"}
	masked      = obj{"const": "***", "description": "已变更，值不在事件中（经 API 按权限查看）"}
	dateField   = obj{"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$", "description": "日期 YYYY-MM-DD"}
	categories  = obj{"type": "array", "minItems": 1, "items": category, "description": "重点人员类别代码"}
	idTypeField = obj{"type": "string", "pattern": "^[0-9]{3}$", "description": "证件类型代码（证件号码不在事件中）"}
)

func personDataProps() obj {
	return obj{
		"hukouRegion": countyCode, "residRegion": countyCode,
		"categories": categories, "basis": basisField, "reviewBy": dateField,
		"unit": unitField("登记单位代码"), "officer": officerField, "registeredAt": dateTime("登记时间"),
	}
}

func keyPersonDefs() []Event {
	register := personDataProps()
	register["personNo"], register["seq"], register["idType"] = personNo, seqField, idTypeField
	changes := personDataProps()
	changes["name"], changes["hukouAddr"], changes["residAddr"] = masked, masked, masked
	changes["sex"], changes["birthDate"] = masked, masked
	changesObj := object("变更的字段", changes)
	changesObj["minProperties"] = 1
	return []Event{
		{Kind: KindKeyPersonRegister, Summary: "重点人员登记（部级下发，已应用；不含证件号码、姓名、性别、出生日期、住址）",
			Data:    object("", register, "personNo", "seq", "idType", "categories", "basis", "unit", "officer", "registeredAt"),
			Example: `{"messageId":"0193a0c0-0000-7000-8000-000000000001","kind":"keyperson.register","from":"100000000000","receivedAt":"2026-11-27T10:00:00.000+08:00","data":{"personNo":"32010620261126000017","seq":1,"idType":"111","hukouRegion":"310104","residRegion":"310115","categories":["0201"],"basis":{"docNo":"苏公鼓（测）字〔2026〕第0017号","approvedBy":"南京市公安局鼓楼分局（测试）","approvedAt":"2026-11-26T11:00:00.000+08:00","legal":"有关规定（测试数据）"},"reviewBy":"2027-05-26","unit":"320106000000","officer":"1023456","registeredAt":"2026-11-26T15:20:00.000+08:00"}}`},
		{Kind: KindKeyPersonChange, Summary: "重点人员变更（变更的姓名、性别、出生日期、住址以 *** 表示）",
			Data: object("", obj{"personNo": personNo, "seq": seqField, "changes": changesObj,
				"reason": text(1, 500, true, "变更原因"), "changedAt": dateTime("变更时间")},
				"personNo", "seq", "changes", "reason", "changedAt"),
			Example: `{"messageId":"0193a0c0-0000-7000-8000-000000000002","kind":"keyperson.change","from":"100000000000","receivedAt":"2026-11-27T10:00:00.000+08:00","data":{"personNo":"32010620261126000017","seq":2,"changes":{"residRegion":"310104","residAddr":"***"},"reason":"居住地变更（测试数据）","changedAt":"2026-11-27T09:00:00.000+08:00"}}`},
		{Kind: KindKeyPersonCancel, Summary: "重点人员注销",
			Data: object("", obj{"personNo": personNo, "seq": seqField, "reason": text(1, 500, true, "注销原因"),
				"basis": basisField, "cancelledAt": dateTime("注销时间")}, "personNo", "seq", "reason", "basis", "cancelledAt"),
			Example: `{"messageId":"0193a0c0-0000-7000-8000-000000000003","kind":"keyperson.cancel","from":"100000000000","receivedAt":"2026-11-27T10:00:00.000+08:00","data":{"personNo":"32010620261126000017","seq":6,"reason":"不再列管（测试数据）","basis":{"docNo":"测字第1号"},"cancelledAt":"2026-11-27T09:00:00.000+08:00"}}`},
		{Kind: KindKeyPersonControl, Summary: "重点人员布控",
			Data: object("", obj{"personNo": personNo, "seq": seqField, "controlNo": personNo,
				"level":     obj{"type": "integer", "minimum": 1, "maximum": 3, "description": "布控级别"},
				"measures":  obj{"type": "array", "minItems": 1, "items": obj{"type": "string"}, "description": "布控措施"},
				"regions":   obj{"type": "array", "minItems": 1, "items": digits(6, "行政区划代码"), "description": "布控区域"},
				"validFrom": dateTime("生效时间"), "validTo": dateTime("失效时间"), "basis": basisField},
				"personNo", "seq", "controlNo", "level", "measures", "regions", "validFrom", "validTo", "basis"),
			Example: `{"messageId":"0193a0c0-0000-7000-8000-000000000004","kind":"keyperson.control","from":"100000000000","receivedAt":"2026-11-27T10:00:00.000+08:00","data":{"personNo":"32010620261126000017","seq":3,"controlNo":"32010620261127000001","level":2,"measures":["travel"],"regions":["310000"],"validFrom":"2026-11-27T00:00:00.000+08:00","validTo":"2026-12-27T00:00:00.000+08:00","basis":{"docNo":"测字第2号"}}}`},
		{Kind: KindKeyPersonRelease, Summary: "重点人员解控",
			Data: object("", obj{"personNo": personNo, "seq": seqField, "controlNo": personNo,
				"reason": text(1, 500, true, "解控原因"), "releasedAt": dateTime("解控时间")},
				"personNo", "seq", "controlNo", "reason", "releasedAt"),
			Example: `{"messageId":"0193a0c0-0000-7000-8000-000000000005","kind":"keyperson.release","from":"100000000000","receivedAt":"2026-11-27T10:00:00.000+08:00","data":{"personNo":"32010620261126000017","seq":4,"controlNo":"32010620261127000001","reason":"期满解控（测试数据）","releasedAt":"2026-11-27T09:00:00.000+08:00"}}`},
		{Kind: KindKeyPersonTask, Summary: "核实登记任务下发",
			Data: object("", obj{"personNo": personNo, "seq": seqField, "taskNo": serialNo("任务编号"),
				"items":        obj{"type": "array", "minItems": 1, "maxItems": 4, "items": enum("核实项", "identity", "address", "contact", "status")},
				"assignedUnit": unitField("承办单位代码"), "deadline": dateTime("办结时限"), "note": text(0, 500, true, "说明")},
				"personNo", "seq", "taskNo", "items", "assignedUnit", "deadline"),
			Example: `{"messageId":"0193a0c0-0000-7000-8000-000000000006","kind":"keyperson.task","from":"100000000000","receivedAt":"2026-11-27T10:00:00.000+08:00","data":{"personNo":"32010620261126000017","seq":5,"taskNo":"10000020261127000001","items":["address"],"assignedUnit":"310104000000","deadline":"2026-11-30T18:00:00.000+08:00"}}`},
		{Kind: KindKeyPersonTaskSign, Summary: "核实任务签收",
			Data: object("", obj{"personNo": personNo, "seq": seqField, "taskNo": serialNo("任务编号"),
				"unit": unitField("签收单位代码"), "officer": officerField, "signedAt": dateTime("签收时间")},
				"personNo", "seq", "taskNo", "unit", "officer", "signedAt"),
			Example: `{"messageId":"0193a0c0-0000-7000-8000-000000000007","kind":"keyperson.task.sign","from":"310000000000","receivedAt":"2026-11-27T10:00:00.000+08:00","data":{"personNo":"32010620261126000017","seq":7,"taskNo":"10000020261127000001","unit":"310104000000","officer":"1023456","signedAt":"2026-11-27T09:00:00.000+08:00"}}`},
	}
}
