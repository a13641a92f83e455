package contracts

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDemoCategoriesMatchShared(t *testing.T) {
	demo := DemoCategories()
	file, err := LoadCategories(shared("codes", "categories.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(demo.Codes(), file.Codes()) || demo.Len() != 7 || demo.Source() != DemoSource {
		t.Fatalf("demo %v (%s), shared %v", demo.Codes(), demo.Source(), file.Codes())
	}
	for _, c := range file.Codes() {
		a, _ := demo.Name(c)
		b, _ := file.Name(c)
		if a != b || a == "" {
			t.Errorf("%s: %q vs %q", c, a, b)
		}
	}
	if name, ok := demo.Name("0201"); !ok || name != "涉毒人员" {
		t.Errorf("Name(0201) = %q, %v", name, ok)
	}
	if demo.Has("0701") || (Categories{}).Has("0201") {
		t.Error("Has reports a code that is not there")
	}
}

func TestParseCategories(t *testing.T) {
	good := map[string]string{
		"two columns":      "code\tname\n0701\t测试类别\n",
		"BOM and CRLF":     "\uFEFFcode\tname\tnote\r\n0701\t测试类别\tx\r\n\r\n",
		"no final newline": "code\tname\n0701\t测试类别",
		"extra columns":    "code\tname\tnote\textra\n0701\t测试类别\ta\tb\n",
		"blank lines":      "code\tname\n\n0701\t测试类别\n\n",
		"name spaces trim": "code\tname\n0701\t 测试类别 \n",
	}
	for name, in := range good {
		c, err := ParseCategories(strings.NewReader(in))
		if err != nil || !c.Has("0701") || c.Len() != 1 {
			t.Errorf("%s: %v %v", name, c.Codes(), err)
		}
		if n, _ := c.Name("0701"); n != "测试类别" {
			t.Errorf("%s: name %q", name, n)
		}
	}
	bad := map[string]string{
		"empty":          "",
		"header only":    "code\tname\tnote\n",
		"wrong header":   "kode\tname\n0701\tx\n",
		"comma header":   "code,name\n0701,x\n",
		"3-digit code":   "code\tname\n701\tx\n",
		"code letters":   "code\tname\n07a1\tx\n",
		"no name column": "code\tname\n0701\n",
		"blank name":     "code\tname\n0701\t \n",
		"duplicate":      "code\tname\n0701\tx\n0701\ty\n",
		"not UTF-8":      "code\tname\n0701\t\xff\n",
	}
	for name, in := range bad {
		if c, err := ParseCategories(strings.NewReader(in)); err == nil {
			t.Errorf("%s: accepted %v", name, c.Codes())
		}
	}
}

func TestConfig(t *testing.T) {
	dir := t.TempDir()
	custom := filepath.Join(dir, "categories.tsv")
	if err := os.WriteFile(custom, []byte("code\tname\n0701\t测试类别\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := NewValidator(ConfigFromEnv(func(k string) string {
		if k == EnvCategories {
			return custom
		}
		return ""
	}))
	if err != nil {
		t.Fatal(err)
	}
	if v.Categories().Source() != custom {
		t.Errorf("source %q", v.Categories().Source())
	}
	// With the deployment table, 0701 is known and the demo's 0201 is not.
	register := validPayload(t, "valid/01")
	if _, err := v.ValidatePayload(KindRegister, mutate(t, register, set("categories", []string{"0701"}))); err != nil {
		t.Errorf("0701 rejected: %v", err)
	}
	_, err = v.ValidatePayload(KindRegister, register)
	assertField(t, err, CodeNotInTable, "categories[0]")

	if _, err := NewValidator(Config{CategoriesPath: filepath.Join(dir, "missing.tsv")}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := NewValidator(Config{CategoriesPath: " " + custom}); err == nil {
		t.Error("padded path accepted")
	}
	if err := (Config{}).Validate(); err == nil {
		t.Error("Validate accepts a config without location before defaults")
	}
	d := Config{}
	d.setDefaults()
	if err := d.Validate(); err != nil {
		t.Error(err)
	}
	if _, off := time.Date(2026, 11, 27, 0, 0, 0, 0, d.Location).Zone(); off != 8*3600 {
		t.Errorf("default location offset %d", off)
	}
}

func TestLocationDecidesLocalDate(t *testing.T) {
	// registeredAt 2026-11-25T20:00Z is 26 November in Shanghai but 25
	// November in UTC: reviewBy 2027-11-26 is one year + 1 day in UTC.
	payload := mutate(t, validPayload(t, "valid/01"), all(set("registeredAt", "2026-11-25T20:00:00Z"), set("reviewBy", "2027-11-26")))
	if _, err := newTestValidator(t).ValidatePayload(KindRegister, payload); err != nil {
		t.Fatalf("Asia/Shanghai: %v", err)
	}
	utc, err := NewValidator(Config{Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	_, err = utc.ValidatePayload(KindRegister, payload)
	assertField(t, err, CodeSchema, "reviewBy")
}
