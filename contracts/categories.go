package contracts

import (
	"bufio"
	_ "embed" // demo category table
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"unicode/utf8"
)

// demoCategoriesTSV is shared/codes/categories.tsv, copied by gencodes.
//
//go:embed categories_demo.tsv
var demoCategoriesTSV string

// DemoSource is the Source of the embedded demo category table.
const DemoSource = "embedded demo table (shared/codes/categories.tsv)"

// Categories is a key-person category code table: four-digit codes and their
// names. It is read-only; the zero value holds no code.
type Categories struct {
	names  map[string]string
	source string
}

// Has reports whether code is in the table.
func (c Categories) Has(code string) bool {
	_, ok := c.names[code]
	return ok
}

// Name returns the name of code.
func (c Categories) Name(code string) (string, bool) {
	n, ok := c.names[code]
	return n, ok
}

// Codes returns the codes of the table, sorted.
func (c Categories) Codes() []string {
	codes := make([]string, 0, len(c.names))
	for code := range c.names {
		codes = append(codes, code)
	}
	slices.Sort(codes)
	return codes
}

// Len returns the number of codes in the table.
func (c Categories) Len() int { return len(c.names) }

// Source names where the table was read from: a file path or DemoSource.
func (c Categories) Source() string { return c.source }

// DemoCategories returns the embedded demo table (shared/codes/categories.tsv).
func DemoCategories() Categories {
	c, err := ParseCategories(strings.NewReader(demoCategoriesTSV))
	if err != nil { // the generator checked the table; a failure is a build defect
		return Categories{}
	}
	c.source = DemoSource
	return c
}

// LoadCategories reads a category table in the format of
// shared/codes/categories.tsv (see ParseCategories).
func LoadCategories(path string) (Categories, error) {
	f, err := os.Open(path)
	if err != nil {
		return Categories{}, fmt.Errorf("load categories: %w", err)
	}
	defer f.Close()
	c, err := ParseCategories(f)
	if err != nil {
		return Categories{}, fmt.Errorf("load categories %s: %w", path, err)
	}
	c.source = path
	return c, nil
}

// ParseCategories parses a UTF-8 tab-separated category table: a header line
// whose first two columns are "code" and "name", then one row per category
// with a four-digit code and a non-blank name. Further columns (such as
// "note") are ignored, as are blank lines, a leading byte-order mark and
// carriage returns. A table needs at least one row and no code twice.
func ParseCategories(r io.Reader) (Categories, error) {
	c := Categories{names: make(map[string]string)}
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSuffix(sc.Text(), "\r")
		if line == 1 {
			text = strings.TrimPrefix(text, "\uFEFF")
		}
		if !utf8.ValidString(text) {
			return Categories{}, fmt.Errorf("line %d: not UTF-8", line)
		}
		cols := strings.Split(text, "\t")
		if line == 1 {
			if len(cols) < 2 || cols[0] != "code" || cols[1] != "name" {
				return Categories{}, errors.New(`line 1: header must start with "code<TAB>name"`)
			}
			continue
		}
		if strings.TrimSpace(text) == "" {
			continue
		}
		if len(cols) < 2 {
			return Categories{}, fmt.Errorf("line %d: want code<TAB>name", line)
		}
		code, name := cols[0], strings.TrimSpace(cols[1])
		if !isDigits(code, 4, 4) {
			return Categories{}, fmt.Errorf("line %d: code %q is not four digits", line, code)
		}
		if name == "" {
			return Categories{}, fmt.Errorf("line %d: code %s has no name", line, code)
		}
		if _, dup := c.names[code]; dup {
			return Categories{}, fmt.Errorf("line %d: duplicate code %s", line, code)
		}
		c.names[code] = name
	}
	if err := sc.Err(); err != nil {
		return Categories{}, err
	}
	if len(c.names) == 0 {
		return Categories{}, errors.New("no category")
	}
	return c, nil
}
