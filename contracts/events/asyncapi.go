package events

import (
	"encoding/json"
	"strings"
)

// Exchanges of the internal pub/sub (topic exchanges, routing key = kind).
const (
	// IngressExchange is where modules publish their events.
	IngressExchange = "zhian.ingress"
	// EventsExchange is where the hub publishes every valid event.
	EventsExchange = "zhian.events"
)

// Rejection is the reply the hub sends to the reply_to queue of an ingress
// event it refuses (with the delivery's correlation_id).
type Rejection struct {
	Code      string `json:"code"`
	Reason    string `json:"reason"`
	Path      string `json:"path,omitempty"`
	MessageID string `json:"messageId,omitempty"`
}

func rejectionSchema() map[string]any {
	return obj{
		"type":  "object",
		"title": "Rejection（入口拒收回复）",
		"properties": obj{
			"code":      obj{"type": "string", "enum": []any{"E100", "E102", "E120"}, "description": "E100 非 JSON 对象；E102 未知或不允许发布的事件类型；E120 不符合契约"},
			"reason":    obj{"type": "string", "description": "拒收原因（中文），以字段路径开头"},
			"path":      obj{"type": "string", "description": "首个违规处的 JSON 路径，如 data.level"},
			"messageId": obj{"type": "string", "description": "被拒事件的 messageId（可读出时）"},
		},
		"required":             []any{"code", "reason"},
		"additionalProperties": false,
	}
}

// AsyncAPI returns the AsyncAPI 3.0.0 document of the internal pub/sub,
// generated from the registry: for each kind a channel on zhian.events
// (address = routing key = kind) and, for the module kinds, one on
// zhian.ingress; the hub's operations (receive from the ingress, with the
// rejection reply; send on zhian.events); one message per kind whose payload
// is the kind's schema (without $schema and $id) with its example.
func (r *Registry) AsyncAPI() []byte {
	channels, operations, messages := obj{}, obj{}, obj{}
	amqpChannel := func(exchange string) obj {
		return obj{"amqp": obj{"is": "routingKey", "bindingVersion": "0.3.0",
			"exchange": obj{"name": exchange, "type": "topic", "durable": true, "autoDelete": false}}}
	}
	for _, e := range r.events {
		id := opName(e.Kind)
		payload := e.schemaValue()
		delete(payload, "$schema")
		delete(payload, "$id")
		var example any
		_ = json.Unmarshal([]byte(e.Example), &example) // examples are tested JSON
		messages[e.Kind] = obj{
			"name": e.Kind, "title": e.Kind, "summary": e.Summary, "contentType": "application/json",
			"payload":       payload,
			"correlationId": obj{"location": "$message.payload#/messageId"},
			"bindings":      obj{"amqp": obj{"messageType": e.Kind, "bindingVersion": "0.3.0"}},
			"examples":      []any{obj{"name": "example", "payload": example}},
		}
		ref := obj{"$ref": "#/components/messages/" + e.Kind}
		channels["events."+e.Kind] = obj{
			"address": e.Kind, "title": e.Kind + "（" + EventsExchange + "）", "summary": e.Summary,
			"messages": obj{e.Kind: ref}, "bindings": amqpChannel(EventsExchange),
		}
		operations["send"+id] = obj{
			"action": "send", "channel": obj{"$ref": "#/channels/events." + e.Kind},
			"summary":  "枢纽发布 " + e.Kind + " 到 " + EventsExchange + "（路由键 " + e.Kind + "）",
			"messages": []any{obj{"$ref": "#/channels/events." + e.Kind + "/messages/" + e.Kind}},
			"bindings": obj{"amqp": obj{"deliveryMode": 2, "bindingVersion": "0.3.0"}},
		}
		if !e.Module {
			continue
		}
		channels["ingress."+e.Kind] = obj{
			"address": e.Kind, "title": e.Kind + "（" + IngressExchange + "）",
			"summary":  "模块发布 " + e.Kind + "；枢纽校验契约后转发到 " + EventsExchange,
			"messages": obj{e.Kind: ref}, "bindings": amqpChannel(IngressExchange),
		}
		operations["receive"+id] = obj{
			"action": "receive", "channel": obj{"$ref": "#/channels/ingress." + e.Kind},
			"summary":     "枢纽从 " + IngressExchange + " 接收 " + e.Kind + " 并按契约校验",
			"description": "Valid events are published to " + EventsExchange + " with publisher confirms before the ingress delivery is acked. Invalid ones are kept as dead letters and, when the message has reply_to, answered with a Rejection carrying its correlation_id.",
			"messages":    []any{obj{"$ref": "#/channels/ingress." + e.Kind + "/messages/" + e.Kind}},
			"reply": obj{
				"address":  obj{"location": "$message.header#/reply_to", "description": "the AMQP reply_to property"},
				"messages": []any{obj{"$ref": "#/components/messages/rejection"}},
			},
		}
	}
	messages["rejection"] = obj{
		"name": "rejection", "title": "入口拒收回复", "contentType": "application/json",
		"summary":       "枢纽拒收入口事件时回复发布方",
		"payload":       rejectionSchema(),
		"correlationId": obj{"location": "$message.header#/correlation_id", "description": "the correlation_id of the refused delivery"},
		"examples":      []any{obj{"name": "schema", "payload": obj{"code": "E120", "reason": "data.level：数值超出允许范围", "path": "data.level", "messageId": "0193a0b4-6c2e-7d41-8a55-2f3c4d5e6f70"}}},
	}
	doc := obj{
		"asyncapi": "3.0.0",
		"id":       "urn:zhianhub:events",
		"info": obj{
			"title":   "zhianhub 内部事件",
			"version": "1.0.0",
			"description": "上海市公安局治安信息枢纽的内部发布/订阅：模块把事件发布到主题交换机 " + IngressExchange +
				"（路由键 = 事件类型），枢纽按契约（JSON Schema）校验后发布到 " + EventsExchange +
				"；模块按其 ACL 订阅。Generated from the contract registry (contracts/events).",
		},
		"defaultContentType": "application/json",
		"channels":           channels,
		"operations":         operations,
		"components":         obj{"messages": messages},
	}
	b, _ := json.MarshalIndent(doc, "", "  ") // plain maps: cannot fail
	return b
}

// opName turns a kind into an operation id part: warning.issued →
// WarningIssued, keyperson.task.sign → KeypersonTaskSign.
func opName(kind string) string {
	var b strings.Builder
	for _, part := range strings.Split(kind, ".") {
		if part == "" {
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}
