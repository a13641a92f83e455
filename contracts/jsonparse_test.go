package contracts

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"testing"
	"time"
	"unicode/utf8"
)

// decoderParse is the earlier parser, built on json.Decoder.Token: the
// oracle the byte scanner must agree with.
func decoderParse(data []byte) (*object, error) {
	if !utf8.Valid(data) || !json.Valid(data) {
		return nil, ErrNotObject
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, ErrNotObject
	}
	var dup *FieldError
	var object_ func(path string) (*object, error)
	var value func(path string) (any, error)
	object_ = func(path string) (*object, error) {
		o := &object{vals: map[string]any{}}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return nil, err
			}
			key := tok.(string)
			at := joinPath(path, key)
			v, err := value(at)
			if err != nil {
				return nil, err
			}
			if _, seen := o.vals[key]; seen {
				if dup == nil {
					dup = fieldErr(CodeSchema, at, "字段重复出现")
				}
				continue
			}
			o.keys = append(o.keys, key)
			o.vals[key] = v
		}
		_, err := dec.Token()
		return o, err
	}
	value = func(path string) (any, error) {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		switch tok {
		case json.Delim('{'):
			return object_(path)
		case json.Delim('['):
			arr := []any{}
			for i := 0; dec.More(); i++ {
				v, err := value(path + "[" + strconv.Itoa(i) + "]")
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
			_, err := dec.Token()
			return arr, err
		}
		return tok, nil
	}
	o, err := object_("")
	if err != nil {
		return nil, ErrNotObject
	}
	if dup != nil {
		return nil, dup
	}
	return o, nil
}

func checkSameParse(t *testing.T, doc []byte) {
	t.Helper()
	want, werr := decoderParse(doc)
	got, gerr := parsePayload(doc)
	var wfe, gfe *FieldError
	switch {
	case errors.As(werr, &wfe):
		if !errors.As(gerr, &gfe) || *gfe != *wfe {
			t.Fatalf("%q: scanner %v, decoder %v", doc, gerr, werr)
		}
	case werr != nil:
		if !errors.Is(gerr, ErrNotObject) {
			t.Fatalf("%q: scanner %v, decoder refused it", doc, gerr)
		}
	case gerr != nil:
		t.Fatalf("%q: scanner %v, decoder accepted it", doc, gerr)
	case !reflect.DeepEqual(got, want):
		t.Fatalf("%q: scanner %#v, decoder %#v", doc, got, want)
	}
}

var parseSeeds = []string{
	`{}`, ` { } `, `{"a":1}`, `{"a":[]}`, `{"a":[1,2,[3,{}]],"b":{"c":null,"d":true,"e":false}}`,
	`{"n":-0.5e+10,"m":1E-3,"k":0}`, `{"s":"\u4e2d\u6587\ud83d\ude00 \"q\" \\ \/ \b\f\n\r\t"}`,
	`{"中文键":"值","x":"é"}`, `{"a":1,"a":2}`, `{"o":{"a":1,"b":{"a":1,"a":3}},"o":1}`,
	`{"a" : [ 1 , "2" ] , "b" :{ } }`, `[1]`, `"s"`, `{"a":}`, `{"a":1,}`, "{\"a\":\"\xff\"}",
	`{"personNo":"32010620261126000017","seq":3,"categories":["0201"],"basis":{"docNo":"苏（测）"}}`,
}

func TestScannerMatchesDecoder(t *testing.T) {
	for _, s := range parseSeeds {
		checkSameParse(t, []byte(s))
	}
}

func FuzzScannerMatchesDecoder(f *testing.F) {
	for _, s := range parseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) { checkSameParse(t, doc) })
}

// BenchmarkParsePayload compares the byte scanner with the json.Decoder
// tree builder it replaced, on a ~1 KiB register payload.
func BenchmarkParsePayload(b *testing.B) {
	doc := []byte(`{"personNo":"32010620261126000017","seq":1,"idType":"111","idNo":"320106198605171356","name":"张测试","sex":"1",` +
		`"birthDate":"1986-05-17","hukouRegion":"320106","hukouAddr":"江苏省南京市鼓楼区测试路1号（虚构地址）","residRegion":"310115",` +
		`"residAddr":"上海市浦东新区测试大道100弄5号（虚构地址）","categories":["0201","0301"],"basis":{"docNo":"苏公鼓（测）字〔2026〕第0017号",` +
		`"approvedBy":"南京市公安局鼓楼分局（测试）","approvedAt":"2026-11-26T11:00:00.000+08:00","legal":"《中华人民共和国禁毒法》有关规定（测试数据）"},` +
		`"reviewBy":"2027-05-26","unit":"320106000000","officer":"1023456","registeredAt":"2026-11-26T15:20:00.000+08:00"}`)
	var res [2]testing.BenchmarkResult
	for i, p := range []struct {
		name string
		fn   func([]byte) (*object, error)
	}{{"decoder", decoderParse}, {"scanner", parsePayload}} {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(doc)))
			for b.Loop() {
				if _, err := p.fn(doc); err != nil {
					b.Fatal(err)
				}
			}
			res[i] = testing.BenchmarkResult{N: b.N, T: b.Elapsed()}
		})
	}
	if res[0].N > 0 && res[1].N > 0 {
		b.Logf("payload %d B: decoder %v/op, scanner %v/op: %.1fx faster", len(doc),
			res[0].T/time.Duration(res[0].N), res[1].T/time.Duration(res[1].N),
			float64(res[0].T)/float64(res[0].N)/(float64(res[1].T)/float64(res[1].N)))
	}
}
