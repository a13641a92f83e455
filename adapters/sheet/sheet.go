// Package sheet writes tables for download: Excel workbooks (.xlsx, with
// excelize's StreamWriter) and CSV (UTF-8 with a byte-order mark, which Excel
// and WPS need to read Chinese text, CRLF line ends).
//
// A Table is filled row by row and then written out whole (WriteTo), so that
// a caller can still refuse or fail cleanly after the last row: nothing has
// been sent yet. Memory stays bounded whatever the number of rows: CSV rows
// go to a temporary file, and excelize moves the sheet data of a workbook to
// a temporary file once it passes excelize.StreamChunkSize (16 MiB); strings
// are written inline, not into a shared-strings table. Close removes the
// temporary files.
//
// Cells are strings, integers, time.Time (shown in Config.Location; an
// xlsx cell holds a real date-time with the format TimeFormat) or nil (an
// empty cell; so is a zero time.Time). In CSV a text cell that begins with
// = + - @, a tab or a carriage return is prefixed with ' so that a
// spreadsheet does not take it for a formula (CSV injection); in xlsx text
// is always text.
package sheet

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/xuri/excelize/v2"
)

// Format is the format of a table.
type Format string

// Formats.
const (
	XLSX Format = "xlsx"
	CSV  Format = "csv"
)

// ContentType is the media type of the format.
func (f Format) ContentType() string {
	switch f {
	case XLSX:
		return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
	case CSV:
		return "text/csv; charset=utf-8"
	}
	return "application/octet-stream"
}

// MaxRows is the most data rows of a worksheet (Excel's 1,048,576 rows, less
// the header row); both formats keep to it.
const MaxRows = excelize.TotalRows - 1

// TimeFormat is the number format of xlsx time cells, and the layout of
// CSV times (TimeLayout).
const (
	TimeFormat = "yyyy-mm-dd hh:mm:ss"
	TimeLayout = time.DateTime
)

// Column is a column of a table.
type Column struct {
	// Header is the text of the header row.
	Header string
	// Width is the xlsx column width in characters; 0: excelize's default.
	Width float64
}

// Config configures a table.
type Config struct {
	// Format is XLSX or CSV. Required.
	Format Format
	// Sheet is the name of the xlsx worksheet (at most 31 characters, none
	// of : \ / ? * [ ]). Default "Sheet1".
	Sheet string
	// Columns are the columns, at least one. Required.
	Columns []Column
	// Location is where times are shown. Default time.UTC.
	Location *time.Location
	// TmpDir receives the temporary files. Default os.TempDir().
	TmpDir string
}

func (c *Config) setDefaults() {
	if c.Sheet == "" {
		c.Sheet = "Sheet1"
	}
	if c.Location == nil {
		c.Location = time.UTC
	}
}

// Validate reports a configuration error (after the defaults).
func (c Config) Validate() error {
	var errs []error
	if c.Format != XLSX && c.Format != CSV {
		errs = append(errs, fmt.Errorf("unknown format %q", c.Format))
	}
	if len(c.Columns) == 0 {
		errs = append(errs, errors.New("no columns"))
	}
	if utf8.RuneCountInString(c.Sheet) > 31 || strings.ContainsAny(c.Sheet, `:\/?*[]`) {
		errs = append(errs, fmt.Errorf("invalid sheet name %q", c.Sheet))
	}
	if c.Location == nil {
		errs = append(errs, errors.New("Location is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sheet: invalid config: %w", err)
	}
	return nil
}

// ErrTooManyRows is returned by Row past MaxRows.
var ErrTooManyRows = fmt.Errorf("sheet: more than %d rows", MaxRows)

// Table is a table being filled. Not safe for concurrent use.
type Table interface {
	// Row appends a row: one cell per column (missing cells are empty).
	Row(cells ...any) error
	// Rows is the number of data rows appended.
	Rows() int
	// WriteTo finishes the document and writes it to w; the table takes no
	// more rows after it.
	WriteTo(w io.Writer) (int64, error)
	// Close releases the temporary files.
	Close() error
}

// New starts a table with its header row.
func New(cfg Config) (Table, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Format == CSV {
		return newCSV(cfg)
	}
	return newXLSX(cfg)
}

// xlsxTable writes a workbook of one worksheet with excelize's StreamWriter.
type xlsxTable struct {
	cfg       Config
	f         *excelize.File
	sw        *excelize.StreamWriter
	timeStyle int
	rows      int
	done      bool
	buf       []any
}

func newXLSX(cfg Config) (*xlsxTable, error) {
	f := excelize.NewFile(excelize.Options{TmpDir: cfg.TmpDir})
	t := &xlsxTable{cfg: cfg, f: f, buf: make([]any, len(cfg.Columns))}
	if err := t.start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("sheet: xlsx: %w", err)
	}
	return t, nil
}

func (t *xlsxTable) start() error {
	f := t.f
	if t.cfg.Sheet != "Sheet1" {
		if err := f.SetSheetName("Sheet1", t.cfg.Sheet); err != nil {
			return err
		}
	}
	var err error
	if t.sw, err = f.NewStreamWriter(t.cfg.Sheet); err != nil {
		return err
	}
	numFmt := TimeFormat
	if t.timeStyle, err = f.NewStyle(&excelize.Style{CustomNumFmt: &numFmt}); err != nil {
		return err
	}
	header, err := f.NewStyle(&excelize.Style{Font: &excelize.Font{Bold: true},
		Fill: excelize.Fill{Type: "pattern", Pattern: 1, Color: []string{"DDEBF7"}}})
	if err != nil {
		return err
	}
	for i, c := range t.cfg.Columns {
		if c.Width > 0 {
			if err := t.sw.SetColWidth(i+1, i+1, c.Width); err != nil {
				return err
			}
		}
	}
	// The header row stays in view.
	if err := t.sw.SetPanes(&excelize.Panes{Freeze: true, YSplit: 1, TopLeftCell: "A2", ActivePane: "bottomLeft"}); err != nil {
		return err
	}
	cells := make([]any, len(t.cfg.Columns))
	for i, c := range t.cfg.Columns {
		cells[i] = excelize.Cell{StyleID: header, Value: c.Header}
	}
	return t.sw.SetRow("A1", cells)
}

// checkRow refuses a row written after WriteTo, one with more cells than
// the table has columns, and one past MaxRows (the checks of both formats).
func checkRow(done bool, cells, columns, rows int) error {
	switch {
	case done:
		return errors.New("sheet: row after WriteTo")
	case cells > columns:
		return fmt.Errorf("sheet: %d cells for %d columns", cells, columns)
	case rows >= MaxRows:
		return ErrTooManyRows
	}
	return nil
}

func (t *xlsxTable) Row(cells ...any) error {
	if err := checkRow(t.done, len(cells), len(t.cfg.Columns), t.rows); err != nil {
		return err
	}
	clear(t.buf)
	for i, v := range cells {
		switch v := v.(type) {
		case time.Time:
			if !v.IsZero() {
				t.buf[i] = excelize.Cell{StyleID: t.timeStyle, Value: v.In(t.cfg.Location)}
			}
		case *time.Time:
			if v != nil && !v.IsZero() {
				t.buf[i] = excelize.Cell{StyleID: t.timeStyle, Value: v.In(t.cfg.Location)}
			}
		case string, nil, int, int64:
			t.buf[i] = v
		default:
			return fmt.Errorf("sheet: cell %d: unsupported type %T", i+1, v)
		}
	}
	t.rows++
	cell, err := excelize.CoordinatesToCellName(1, t.rows+1)
	if err != nil {
		return err
	}
	if err := t.sw.SetRow(cell, t.buf); err != nil {
		return fmt.Errorf("sheet: xlsx row %d: %w", t.rows, err)
	}
	return nil
}

func (t *xlsxTable) Rows() int { return t.rows }

func (t *xlsxTable) WriteTo(w io.Writer) (int64, error) {
	if t.done {
		return 0, errors.New("sheet: WriteTo twice")
	}
	t.done = true
	if err := t.sw.Flush(); err != nil {
		return 0, fmt.Errorf("sheet: xlsx: %w", err)
	}
	cw := &countWriter{w: w}
	if err := t.f.Write(cw); err != nil {
		return cw.n, fmt.Errorf("sheet: xlsx: %w", err)
	}
	return cw.n, nil
}

func (t *xlsxTable) Close() error { return t.f.Close() }

// csvTable spools CSV rows to a temporary file.
type csvTable struct {
	cfg    Config
	file   *os.File
	bw     *bufio.Writer
	cw     *csv.Writer
	rows   int
	done   bool
	closed bool
	rec    []string
}

// bom is the UTF-8 byte-order mark.
const bom = "\uFEFF"

func newCSV(cfg Config) (*csvTable, error) {
	file, err := os.CreateTemp(cfg.TmpDir, "zhianhub-csv-*")
	if err != nil {
		return nil, fmt.Errorf("sheet: csv: %w", err)
	}
	t := &csvTable{cfg: cfg, file: file, bw: bufio.NewWriterSize(file, 64<<10), rec: make([]string, len(cfg.Columns))}
	t.cw = csv.NewWriter(t.bw)
	t.cw.UseCRLF = true
	_, _ = t.bw.WriteString(bom)
	for i, c := range cfg.Columns {
		t.rec[i] = c.Header
	}
	if err := t.cw.Write(t.rec); err != nil {
		_ = t.Close()
		return nil, fmt.Errorf("sheet: csv: %w", err)
	}
	return t, nil
}

func (t *csvTable) Row(cells ...any) error {
	if err := checkRow(t.done, len(cells), len(t.cfg.Columns), t.rows); err != nil {
		return err
	}
	clear(t.rec)
	for i, v := range cells {
		switch v := v.(type) {
		case string:
			t.rec[i] = csvText(v)
		case int:
			t.rec[i] = strconv.Itoa(v)
		case int64:
			t.rec[i] = strconv.FormatInt(v, 10)
		case time.Time:
			if !v.IsZero() {
				t.rec[i] = v.In(t.cfg.Location).Format(TimeLayout)
			}
		case *time.Time:
			if v != nil && !v.IsZero() {
				t.rec[i] = v.In(t.cfg.Location).Format(TimeLayout)
			}
		case nil:
		default:
			return fmt.Errorf("sheet: cell %d: unsupported type %T", i+1, v)
		}
	}
	t.rows++
	if err := t.cw.Write(t.rec); err != nil {
		return fmt.Errorf("sheet: csv row %d: %w", t.rows, err)
	}
	return nil
}

// csvText defuses text a spreadsheet would take for a formula.
func csvText(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func (t *csvTable) Rows() int { return t.rows }

func (t *csvTable) WriteTo(w io.Writer) (int64, error) {
	if t.done {
		return 0, errors.New("sheet: WriteTo twice")
	}
	t.done = true
	t.cw.Flush()
	if err := t.cw.Error(); err != nil {
		return 0, fmt.Errorf("sheet: csv: %w", err)
	}
	if err := t.bw.Flush(); err != nil {
		return 0, fmt.Errorf("sheet: csv: %w", err)
	}
	if _, err := t.file.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("sheet: csv: %w", err)
	}
	n, err := io.Copy(w, t.file)
	if err != nil {
		return n, fmt.Errorf("sheet: csv: %w", err)
	}
	return n, nil
}

func (t *csvTable) Close() error {
	if t.closed {
		return nil
	}
	t.closed = true
	err := t.file.Close()
	if rmErr := os.Remove(t.file.Name()); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
		err = errors.Join(err, rmErr)
	}
	return err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
