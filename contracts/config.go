package contracts

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// EnvCategories is the environment variable through which the hub names its
// category table file.
const EnvCategories = "ZHIANHUB_CATEGORIES"

// Config configures a Validator. The zero value is usable: the embedded demo
// category table and Asia/Shanghai.
type Config struct {
	// CategoriesPath is the key-person category table, a TSV file in the
	// format of shared/codes/categories.tsv. Empty: the embedded demo table
	// (check Validator.Categories().Source() in deployments).
	CategoriesPath string
	// Location is the zone whose calendar dates the payload dates are.
	// Nil: Asia/Shanghai, or a fixed UTC+08:00 zone where tzdata is missing.
	Location *time.Location
}

// ConfigFromEnv returns the Config named by the environment, read with getenv
// (os.Getenv in the hub): CategoriesPath from ZHIANHUB_CATEGORIES.
func ConfigFromEnv(getenv func(string) string) Config {
	return Config{CategoriesPath: getenv(EnvCategories)}
}

func (c *Config) setDefaults() {
	if c.Location == nil {
		c.Location = shanghai()
	}
}

// Validate reports whether the configuration can be used.
func (c Config) Validate() error {
	if c.CategoriesPath != strings.TrimSpace(c.CategoriesPath) {
		return fmt.Errorf("contracts: categories path %q has surrounding spaces", c.CategoriesPath)
	}
	if c.Location == nil {
		return errors.New("contracts: no location")
	}
	return nil
}

// shanghai returns Asia/Shanghai, or UTC+08:00 without tzdata (the same
// offset since 1991, the zone has no daylight saving time).
func shanghai() *time.Location {
	if loc, err := time.LoadLocation("Asia/Shanghai"); err == nil {
		return loc
	}
	return time.FixedZone("CST", 8*60*60)
}

// Validator checks Ministry-bus payloads. It is immutable and safe for
// concurrent use.
type Validator struct {
	categories Categories
	loc        *time.Location
}

// NewValidator builds a Validator from cfg after applying its defaults.
func NewValidator(cfg Config) (*Validator, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var cats Categories
	if cfg.CategoriesPath == "" {
		cats = DemoCategories()
	} else {
		var err error
		if cats, err = LoadCategories(cfg.CategoriesPath); err != nil {
			return nil, fmt.Errorf("contracts: %w", err)
		}
	}
	if cats.Len() == 0 {
		return nil, errors.New("contracts: empty category table")
	}
	return &Validator{categories: cats, loc: cfg.Location}, nil
}

// Categories returns the category table in use.
func (v *Validator) Categories() Categories { return v.categories }
