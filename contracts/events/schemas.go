package events

import "strconv"

// Building blocks of the event schemas. The schemas are plain JSON values
// built here once; Registry marshals them. Only keywords that mean the same
// in draft 2020-12 and draft-07 are used (see the package comment).

type obj = map[string]any

const (
	uuidPattern     = `^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`
	dateTimePattern = `^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$`
	// ModulePattern is the shape of a module name (also its RabbitMQ user).
	ModulePattern = `^[a-z][a-z0-9-]{1,31}$`
	// singleLine rejects control characters; multiLine allows TAB, LF, CR.
	singleLine = "^[^\u0000-\u001f\u007f-\u009f]*$"
	multiLine  = "^[^\u0000-\b\u000b\f\u000e-\u001f\u007f-\u009f]*$"
	notBlank   = "[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
)

func digits(n int, desc string) obj {
	return obj{"type": "string", "pattern": "^[0-9]{" + strconv.Itoa(n) + "}$", "description": desc}
}

func dateTime(desc string) obj {
	return obj{"type": "string", "format": "date-time", "pattern": dateTimePattern, "description": desc}
}

// text is a string of min..max characters; required texts (min ≥ 1) must
// not be blank.
func text(min, max int, multi bool, desc string) obj {
	p := singleLine
	if multi {
		p = multiLine
	}
	t := obj{"type": "string", "minLength": min, "maxLength": max, "pattern": p, "description": desc}
	if min > 0 {
		return obj{"allOf": []any{t, obj{"pattern": notBlank}}, "description": desc}
	}
	return t
}

func enum(desc string, values ...string) obj {
	vs := make([]any, len(values))
	for i, v := range values {
		vs[i] = v
	}
	return obj{"type": "string", "enum": vs, "description": desc}
}

func intRange(min, max int, desc string) obj {
	return obj{"type": "integer", "minimum": min, "maximum": max, "description": desc}
}

// object is a closed object: properties, the required ones, nothing else.
func object(desc string, props obj, required ...string) obj {
	req := make([]any, len(required))
	for i, r := range required {
		req[i] = r
	}
	o := obj{"type": "object", "properties": props, "additionalProperties": false}
	if desc != "" {
		o["description"] = desc
	}
	if len(req) > 0 {
		o["required"] = req
	}
	return o
}

// Shared fields.
var (
	unitField    = func(desc string) obj { return digits(12, desc) }
	officerField = obj{"type": "string", "pattern": "^[0-9]{6,8}$", "description": "警号，6-8 位数字"}
	personNo     = obj{"type": "string", "pattern": "^[0-9]{10}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])[0-9]{6}$",
		"description": "重点人员编号，20 位"}
	serialNo   = func(desc string) obj { return digits(20, desc) }
	category   = obj{"type": "string", "pattern": "^[0-9]{4}$", "description": "类别代码，4 位数字"}
	countyCode = digits(6, "县级行政区划代码（GB/T 2260）")
)

// frame is the schema of a whole event: the common frame around data.
func frame(kind, title string, module bool, data obj) obj {
	from := obj{"type": "string", "pattern": ModulePattern, "description": "发布模块名（即其 RabbitMQ 用户名）"}
	at, atDesc := "occurredAt", "事件发生时间"
	if !module {
		from = digits(12, "发送节点代码（部级总线消息的 from）")
		at, atDesc = "receivedAt", "枢纽收到并应用该消息的时间"
	}
	return obj{
		"$schema": "https://json-schema.org/draft/2020-12/schema",
		"$id":     SchemaBaseURI + kind + ".json",
		"title":   title,
		"type":    "object",
		"properties": obj{
			"messageId": obj{"type": "string", "pattern": uuidPattern, "description": "消息标识，小写带连字符的 UUID；订阅方据此去重"},
			"kind":      obj{"type": "string", "const": kind},
			"from":      from,
			at:          dateTime(atDesc),
			"data":      data,
		},
		"required":             []any{"messageId", "kind", "from", at, "data"},
		"additionalProperties": false,
	}
}
