package registry_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"zhianhub/contracts"
	"zhianhub/crypto/fieldenc"
	"zhianhub/crypto/keystore"
	"zhianhub/store"
	"zhianhub/store/registry"
	"zhianhub/store/storetest"
)

const (
	ministry = "000000000000"
	shanghai = "310000000000"
)

// now is the registry clock of the tests (the vectors' receiver clock).
var now = time.Date(2026, 11, 27, 10, 0, 0, 0, time.FixedZone("CST", 8*3600))

type env struct {
	ctx  context.Context
	pool *pgxpool.Pool
	reg  *registry.Registry
	v    *contracts.Validator
	kr   *fieldenc.Keyring
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	pool := storetest.NewPool(t)
	dir := filepath.Join(t.TempDir(), "keys")
	if err := keystore.Generate(dir, shanghai, nil); err != nil {
		t.Fatal(err)
	}
	ks, err := keystore.Load(dir, keystore.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kr, err := fieldenc.Open(ctx, store.NewDataKeys(pool), ks)
	if err != nil {
		t.Fatal(err)
	}
	v, err := contracts.NewValidator(contracts.Config{})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Config{Keyring: kr, Validator: v, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return &env{ctx: ctx, pool: pool, reg: reg, v: v, kr: kr}
}

// apply applies m in a transaction of its own, which it commits also after a
// refusal: Apply must leave the transaction usable and unchanged.
func (e *env) apply(t *testing.T, m registry.Message) error {
	t.Helper()
	tx, err := e.pool.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	applyErr := e.reg.Apply(e.ctx, tx, m)
	if err := tx.Commit(e.ctx); err != nil {
		t.Fatalf("commit after Apply (%v): %v", applyErr, err)
	}
	return applyErr
}

func (e *env) mustApply(t *testing.T, msgs ...registry.Message) {
	t.Helper()
	for _, m := range msgs {
		if err := e.apply(t, m); err != nil {
			t.Fatalf("apply %s: %v", m.Kind, err)
		}
	}
}

// snapshot fingerprints every registry table.
func (e *env) snapshot(t *testing.T) string {
	t.Helper()
	var out []string
	for _, table := range []string{"person", "control", "task", "person_history"} {
		var h string
		err := e.pool.QueryRow(e.ctx, fmt.Sprintf(`SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM %s t`, table)).Scan(&h)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, table+":"+h)
	}
	return strings.Join(out, " ")
}

// payload validates doc as kind and returns the typed payload.
func (e *env) payload(t *testing.T, kind, doc string) any {
	t.Helper()
	p, err := e.v.ValidatePayload(kind, []byte(doc))
	if err != nil {
		t.Fatalf("payload %s: %v\n%s", kind, err, doc)
	}
	return p
}

// msg builds an inbound message from the ministry with a fresh id.
func (e *env) msg(t *testing.T, kind, doc string) registry.Message {
	t.Helper()
	return registry.Message{
		ID: uuid.Must(uuid.NewV7()).String(), Direction: registry.In, Node: ministry,
		Kind: kind, Payload: e.payload(t, kind, doc), At: now,
	}
}

func out(m registry.Message) registry.Message {
	m.Direction, m.Node = registry.Out, ministry
	return m
}

// codeOf maps an Apply error to its bus code; "internal" for anything else.
func codeOf(err error) (code, path string) {
	var se *registry.StateError
	var fe *contracts.FieldError
	switch {
	case err == nil:
		return contracts.CodeAccepted, ""
	case errors.As(err, &se):
		return se.ResultCode(), ""
	case errors.As(err, &fe):
		return fe.Code, fe.Path
	}
	return "internal", ""
}

// Payload documents. personNo, controlNo and taskNo are parameters so that
// table cases do not collide in one database.

const (
	idA   = "310104198605171356"
	nameA = "张测试"
	hukA  = "上海市徐汇区测试路1号（虚构地址）"
	resA  = "上海市浦东新区样例路2弄3号（虚构地址）"
	resA2 = "上海市闵行区示例路88号（虚构地址）"
	idB   = "31010819900228006X"
	nameB = "李示例"
	hukB  = "上海市静安区演示路6号（虚构地址）"
)

func personNo(n int) string  { return fmt.Sprintf("32010620261126%06d", n) }
func controlNo(n int) string { return fmt.Sprintf("32010620261127%06d", n) }
func taskNo(n int) string    { return fmt.Sprintf("31010620261126%06d", n) }

func registerA(no string) string {
	return `{"personNo": "` + no + `", "seq": 1, "idType": "111", "idNo": "` + idA + `", "name": "` + nameA + `", "sex": "1", "birthDate": "1986-05-17", "hukouRegion": "310104", "hukouAddr": "` + hukA + `", "residRegion": "310115", "residAddr": "` + resA + `", "categories": ["0201"], "basis": {"docNo": "苏公鼓（测）字〔2026〕第0017号", "approvedBy": "南京市公安局鼓楼分局（测试）", "approvedAt": "2026-11-26T11:00:00.000+08:00", "legal": "《中华人民共和国禁毒法》有关规定（测试数据）"}, "reviewBy": "2027-05-26", "unit": "320106000000", "officer": "1023456", "registeredAt": "2026-11-26T15:20:00.000+08:00"}`
}

func registerB(no string) string {
	return `{"personNo": "` + no + `", "seq": 1, "idType": "111", "idNo": "` + idB + `", "name": "` + nameB + `", "sex": "2", "birthDate": "1990-02-28", "hukouRegion": "310106", "hukouAddr": "` + hukB + `", "categories": ["0301", "9901"], "basis": {"docNo": "浙公西（测）字〔2026〕第0042号", "approvedBy": "杭州市公安局西湖分局（测试）", "approvedAt": "2026-11-25T10:00:00.000+08:00", "legal": "《中华人民共和国刑法》有关规定（测试数据）"}, "reviewBy": "2027-11-20", "unit": "330106000000", "officer": "204518", "registeredAt": "2026-11-25T14:00:00.000+08:00"}`
}

func changeDoc(no, changes string) string {
	return `{"personNo": "` + no + `", "seq": 2, "changes": ` + changes + `, "reason": "居住地变更（测试数据）", "changedAt": "2026-11-27T09:15:00.000+08:00"}`
}

func changeA(no string) string {
	return changeDoc(no, `{"residRegion": "310112", "residAddr": "`+resA2+`"}`)
}

func controlDoc(no, cno, validFrom, validTo string) string {
	return `{"personNo": "` + no + `", "seq": 3, "controlNo": "` + cno + `", "level": 2, "measures": ["verify", "report"], "regions": ["310112", "310115"], "validFrom": "` + validFrom + `", "validTo": "` + validTo + `", "basis": {"docNo": "苏公鼓（测）控字〔2026〕第0003号", "approvedBy": "南京市公安局鼓楼分局（测试）", "approvedAt": "2026-11-27T08:30:00.000+08:00", "legal": "《中华人民共和国人民警察法》有关规定（测试数据）"}}`
}

func controlA(no, cno string) string {
	return controlDoc(no, cno, "2026-11-27T09:00:00.000+08:00", "2027-02-25T09:00:00.000+08:00")
}

func releaseA(no, cno string) string {
	return `{"personNo": "` + no + `", "seq": 4, "controlNo": "` + cno + `", "reason": "布控事由已消除（测试数据）", "releasedAt": "2026-11-27T09:35:00.000+08:00"}`
}

func taskA(no, tno string) string {
	return `{"personNo": "` + no + `", "seq": 5, "taskNo": "` + tno + `", "items": ["identity", "address"], "assignedUnit": "310112000000", "deadline": "2026-11-30T18:00:00.000+08:00", "note": "请核实现居住地址（测试数据）"}`
}

func cancelDoc(no, reason string) string {
	return `{"personNo": "` + no + `", "seq": 6, "reason": "` + reason + `", "basis": {"docNo": "苏公鼓（测）销字〔2026〕第0001号", "approvedBy": "南京市公安局鼓楼分局（测试）", "approvedAt": "2026-11-27T09:50:00.000+08:00", "legal": "《中华人民共和国禁毒法》有关规定（测试数据）"}, "cancelledAt": "2026-11-27T09:52:00.000+08:00"}`
}

func cancelA(no string) string {
	return cancelDoc(no, "列管事由消除，撤销登记（测试数据）")
}

func signB(no, tno string) string {
	return `{"personNo": "` + no + `", "seq": 2, "taskNo": "` + tno + `", "unit": "330106000000", "officer": "204518", "signedAt": "2026-11-27T09:48:00.000+08:00"}`
}
