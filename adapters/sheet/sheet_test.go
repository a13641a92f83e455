package sheet_test

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"

	"zhianhub/adapters/sheet"
	"zhianhub/adapters/sheet/sheettest"
)

var cst = time.FixedZone("CST", 8*3600)

var columns = []sheet.Column{{Header: "序号", Width: 8}, {Header: "时间", Width: 20}, {Header: "用户"}, {Header: "原因", Width: 30}}

// rows are the cells given and, for each, what a spreadsheet shows.
var rows = []struct {
	cells []any
	shown []string
}{
	{[]any{int64(1), time.Date(2026, 11, 1, 0, 0, 5, 0, time.UTC), "li.officer", "查看理由：专案核查"},
		[]string{"1", "2026-11-01 08:00:05", "li.officer", "查看理由：专案核查"}},
	{[]any{2, time.Time{}, "", nil}, // empty cells
		[]string{"2", "", "", ""}},
	{[]any{int64(3), time.Date(2026, 11, 27, 23, 59, 59, 0, cst), "王五", "含,逗号\"引号\"\n与换行"},
		[]string{"3", "2026-11-27 23:59:59", "王五", "含,逗号\"引号\"\n与换行"}},
	{[]any{int64(4)}, // missing cells
		[]string{"4", "", "", ""}},
}

func fill(t *testing.T, format sheet.Format) []byte {
	t.Helper()
	tab, err := sheet.New(sheet.Config{Format: format, Sheet: "审计日志", Columns: columns, Location: cst, TmpDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	for _, r := range rows {
		if err := tab.Row(r.cells...); err != nil {
			t.Fatal(err)
		}
	}
	if tab.Rows() != len(rows) {
		t.Fatalf("Rows() = %d", tab.Rows())
	}
	var buf bytes.Buffer
	n, err := tab.WriteTo(&buf)
	if err != nil || n != int64(buf.Len()) || n == 0 {
		t.Fatalf("WriteTo: %d bytes (%d written) %v", n, buf.Len(), err)
	}
	if err := tab.Row("late"); err == nil {
		t.Error("a row after WriteTo was accepted")
	}
	return buf.Bytes()
}

func want() [][]string {
	out := [][]string{{"序号", "时间", "用户", "原因"}}
	for _, r := range rows {
		out = append(out, r.shown)
	}
	return out
}

// TestXLSXOpenedByLibreOffice: LibreOffice Calc opens the workbook and
// shows the Chinese headers, the numbers, the times (China Standard Time)
// and the text as written.
func TestXLSXOpenedByLibreOffice(t *testing.T) {
	got := sheettest.Convert(t, "审计.xlsx", fill(t, sheet.XLSX))
	if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want()) {
		t.Fatalf("LibreOffice reads\n%q\nwant\n%q", got, want())
	}
}

// TestXLSXStructure: the sheet's name, the frozen header row and real
// date-time cells, as excelize reads them back.
func TestXLSXStructure(t *testing.T) {
	f, err := excelize.OpenReader(bytes.NewReader(fill(t, sheet.XLSX)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := f.GetSheetList(); len(got) != 1 || got[0] != "审计日志" {
		t.Fatalf("sheets %v", got)
	}
	panes, err := f.GetPanes("审计日志")
	if err != nil || !panes.Freeze || panes.YSplit != 1 {
		t.Errorf("panes %+v %v", panes, err)
	}
	typ, err := f.GetCellType("审计日志", "B2")
	if err != nil || typ == excelize.CellTypeInlineString || typ == excelize.CellTypeSharedString {
		t.Errorf("time cell type %v %v: want a number", typ, err)
	}
	raw, err := f.GetCellValue("审计日志", "B2", excelize.Options{RawCellValue: true})
	if err != nil || !strings.HasPrefix(raw, "46327.33") { // 2026-11-01 08:00:05 as an Excel serial
		t.Errorf("time cell raw value %q %v", raw, err)
	}
	if w, err := f.GetColWidth("审计日志", "D"); err != nil || w != 30 {
		t.Errorf("column D width %v %v", w, err)
	}
}

// TestCSV: a UTF-8 byte-order mark, CRLF, quoting, and text that starts
// like a formula defused.
func TestCSV(t *testing.T) {
	b := fill(t, sheet.CSV)
	if !bytes.HasPrefix(b, []byte("\xEF\xBB\xBF序号,时间,用户,原因\r\n")) {
		t.Fatalf("start %q", b[:min(len(b), 40)])
	}
	recs, err := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(b, []byte("\xEF\xBB\xBF")))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%q", recs) != fmt.Sprintf("%q", want()) {
		t.Fatalf("CSV\n%q\nwant\n%q", recs, want())
	}
	if !bytes.Contains(b, []byte("\"含,逗号\"\"引号\"\"\r\n与换行\"\r\n")) {
		t.Errorf("the quoted field: %q", b)
	}

	for _, tc := range []struct{ in, out string }{
		{"=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"},
		{"+1", "'+1"}, {"-1", "'-1"}, {"@SUM(A1)", "'@SUM(A1)"}, {"\tx", "'\tx"},
		{"a=b", "a=b"}, {"正常", "正常"},
	} {
		tab, err := sheet.New(sheet.Config{Format: sheet.CSV, Columns: columns[:1], TmpDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if err := tab.Row(tc.in); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := tab.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		tab.Close()
		recs, err := csv.NewReader(bytes.NewReader(buf.Bytes()[3:])).ReadAll()
		if err != nil || len(recs) != 2 || recs[1][0] != tc.out {
			t.Errorf("%q: %q %v, want %q", tc.in, recs, err, tc.out)
		}
	}
}

// TestCSVSpoolRemoved: Close removes the temporary file.
func TestCSVSpoolRemoved(t *testing.T) {
	dir := t.TempDir()
	tab, err := sheet.New(sheet.Config{Format: sheet.CSV, Columns: columns, TmpDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("%d files in the temporary directory, want the spool", len(ents))
	}
	if err := tab.Close(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("%d files left after Close", len(ents))
	}
}

func TestConfigAndCells(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  sheet.Config
	}{
		{"no format", sheet.Config{Columns: columns}},
		{"unknown format", sheet.Config{Format: "ods", Columns: columns}},
		{"no columns", sheet.Config{Format: sheet.XLSX}},
		{"sheet name too long", sheet.Config{Format: sheet.XLSX, Columns: columns, Sheet: strings.Repeat("表", 32)}},
		{"sheet name with /", sheet.Config{Format: sheet.XLSX, Columns: columns, Sheet: "a/b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := sheet.New(tc.cfg); err == nil {
				t.Error("accepted")
			}
		})
	}
	for _, f := range []sheet.Format{sheet.XLSX, sheet.CSV} {
		tab, err := sheet.New(sheet.Config{Format: f, Columns: columns[:2], TmpDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if err := tab.Row(1, 2, 3); err == nil {
			t.Errorf("%s: more cells than columns accepted", f)
		}
		if err := tab.Row(1.5); err == nil {
			t.Errorf("%s: a float accepted", f)
		}
		if _, err := tab.WriteTo(&bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
		if _, err := tab.WriteTo(&bytes.Buffer{}); err == nil {
			t.Errorf("%s: WriteTo twice", f)
		}
		must(t, tab.Close())
	}
	if sheet.MaxRows != 1048575 {
		t.Errorf("MaxRows %d", sheet.MaxRows)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
