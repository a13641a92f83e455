package mpssim

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"zhianhub/contracts"
)

// ShanghaiCounties are the current GB/T 2260 county-level codes of Shanghai
// with their names; the generator draws regions from them.
var ShanghaiCounties = []struct{ Code, Name string }{
	{"310101", "黄浦区"}, {"310104", "徐汇区"}, {"310105", "长宁区"}, {"310106", "静安区"},
	{"310107", "普陀区"}, {"310109", "虹口区"}, {"310110", "杨浦区"}, {"310112", "闵行区"},
	{"310113", "宝山区"}, {"310114", "嘉定区"}, {"310115", "浦东新区"}, {"310116", "金山区"},
	{"310117", "松江区"}, {"310118", "青浦区"}, {"310120", "奉贤区"}, {"310151", "崇明区"},
}

// StoryKinds is the life of a person in the random traffic, in order:
// register, change, control, release, task, cancel.
var StoryKinds = []string{
	contracts.KindRegister, contracts.KindChange, contracts.KindControl,
	contracts.KindRelease, contracts.KindTask, contracts.KindCancel,
}

var (
	surnames = []rune("王李张刘陈杨赵黄周吴徐孙马朱胡郭何林罗高")
	given    = []rune("甲乙丙丁戊己庚辛壬癸")
	streets  = []string{"测试路", "样例街", "演示大道", "模拟弄", "虚构路"}
	measures = []string{contracts.MeasureNotify, contracts.MeasureVerify, contracts.MeasureReport}
	items    = []string{contracts.ItemIdentity, contracts.ItemAddress, contracts.ItemContact, contracts.ItemStatus}
)

// GeneratorConfig configures a Generator.
type GeneratorConfig struct {
	// Categories is the category table drawn from; default the demo table.
	Categories contracts.Categories
	// Seed makes the output reproducible; 0 seeds at random.
	Seed uint64
	// Location is the zone of the payload times and dates; default
	// Asia/Shanghai (UTC+08:00 without tzdata).
	Location *time.Location
}

func (c *GeneratorConfig) setDefaults() {
	if c.Categories.Len() == 0 {
		c.Categories = contracts.DemoCategories()
	}
	if c.Seed == 0 {
		c.Seed = rand.Uint64()
	}
	if c.Location == nil {
		c.Location = shanghai()
	}
}

// Validate reports an unusable setting.
func (c GeneratorConfig) Validate() error {
	if c.Categories.Len() == 0 {
		return fmt.Errorf("mpssim: empty category table")
	}
	return nil
}

// Generator makes realistic, valid and clearly fictitious key-person
// payloads. It is not safe for concurrent use.
type Generator struct {
	cats   []string
	rng    *rand.Rand
	loc    *time.Location
	serial int
	used   map[string]bool
}

// NewGenerator returns a Generator.
func NewGenerator(cfg GeneratorConfig) (*Generator, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	return &Generator{
		cats:   cfg.Categories.Codes(),
		rng:    rng,
		loc:    cfg.Location,
		serial: rng.IntN(1_000_000),
		used:   make(map[string]bool),
	}, nil
}

// Story is the life of one fictitious person: the payloads of StoryKinds,
// made one at a time with the time of sending.
type Story struct {
	g         *Generator
	PersonNo  string
	step      int
	idNo      string
	sex       string
	birth     string
	hukou     string
	controlNo string
	taskNo    string
	unit      string
}

// NewStory starts the story of a new person, with a personNo not used
// before by this generator.
func (g *Generator) NewStory(now time.Time) *Story {
	hukou := g.county()
	birth := time.Date(1950+g.rng.IntN(56), time.Month(1+g.rng.IntN(12)), 1+g.rng.IntN(28), 0, 0, 0, 0, time.UTC)
	idNo := ResidentIDNumber(hukou, birth, g.rng.IntN(1000))
	sex := "2"
	if (idNo[16]-'0')%2 == 1 {
		sex = "1"
	}
	return &Story{
		g:        g,
		PersonNo: g.SerialNo(now),
		idNo:     idNo,
		sex:      sex,
		birth:    birth.Format(time.DateOnly),
		hukou:    hukou,
		unit:     g.unit(hukou),
	}
}

// Remaining returns the number of payloads the story still has.
func (s *Story) Remaining() int { return len(StoryKinds) - s.step }

// NextKind returns the kind of the next payload, "" when the story is over.
func (s *Story) NextKind() string {
	if s.step >= len(StoryKinds) {
		return ""
	}
	return StoryKinds[s.step]
}

// Next returns the next payload of the story with the ordering header
// (personNo, seq), its times taken from now; ok is false when the story is
// over.
func (s *Story) Next(now time.Time, seq int64) (kind string, payload []byte, ok bool) {
	kind = s.NextKind()
	if kind == "" {
		return "", nil, false
	}
	s.step++
	g := s.g
	now = now.In(g.loc).Truncate(time.Second)
	h := contracts.Header{PersonNo: s.PersonNo, Seq: seq}
	var p any
	switch kind {
	case contracts.KindRegister:
		p = s.person(now, h)
	case contracts.KindChange:
		region := g.county()
		addr := g.address(region)
		p = &contracts.Change{
			Header:    h,
			Changes:   contracts.PersonChanges{ResidRegion: &region, ResidAddr: &addr},
			Reason:    "居住地变更，经社区民警核实（测试数据）",
			ChangedAt: now,
		}
	case contracts.KindControl:
		s.controlNo = g.SerialNo(now)
		p = &contracts.Control{
			Header:    h,
			ControlNo: s.controlNo,
			Level:     1 + g.rng.IntN(3),
			Measures:  g.subset(measures),
			Regions:   g.regions(),
			ValidFrom: now,
			ValidTo:   now.Add(time.Duration(30+g.rng.IntN(150)) * 24 * time.Hour),
			Basis:     g.basis(now),
		}
	case contracts.KindRelease:
		p = &contracts.Release{Header: h, ControlNo: s.controlNo, Reason: "布控事由消除，依审批解除布控（测试数据）", ReleasedAt: now}
	case contracts.KindTask:
		s.taskNo = g.SerialNo(now)
		p = &contracts.Task{
			Header:       h,
			TaskNo:       s.taskNo,
			Items:        g.subset(items),
			AssignedUnit: s.unit,
			Deadline:     now.Add(7 * 24 * time.Hour),
			Note:         "请核实现住址及联系方式（测试数据）",
		}
	default: // cancel
		p = &contracts.Cancel{Header: h, Reason: "经复核不再列为重点人员（测试数据）", Basis: g.basis(now), CancelledAt: now}
	}
	b, err := json.Marshal(p)
	if err != nil { // the payload types always marshal
		panic(fmt.Sprintf("mpssim: marshal %s: %v", kind, err))
	}
	return kind, b, true
}

// TaskNo returns the taskNo of the story's task, "" before it.
func (s *Story) TaskNo() string { return s.taskNo }

func (s *Story) person(now time.Time, h contracts.Header) *contracts.Person {
	g := s.g
	resid := g.county()
	cats := []string{g.cats[g.rng.IntN(len(g.cats))]}
	if c := g.cats[g.rng.IntN(len(g.cats))]; c != cats[0] && g.rng.IntN(3) == 0 {
		cats = append(cats, c)
	}
	return &contracts.Person{
		Header:       h,
		IDType:       contracts.IDTypeResidentCard,
		IDNo:         s.idNo,
		Name:         string(surnames[g.rng.IntN(len(surnames))]) + string(given[g.rng.IntN(len(given))]) + "测试",
		Sex:          s.sex,
		BirthDate:    s.birth,
		HukouRegion:  s.hukou,
		HukouAddr:    g.address(s.hukou),
		ResidRegion:  resid,
		ResidAddr:    g.address(resid),
		Categories:   cats,
		Basis:        g.basis(now),
		ReviewBy:     now.AddDate(0, 3+g.rng.IntN(9), 0).Format(time.DateOnly),
		Unit:         s.unit,
		Officer:      fmt.Sprintf("%06d", 100000+g.rng.IntN(900000)),
		RegisteredAt: now,
	}
}

// SerialNo returns a new 20-digit number shaped like a personNo or
// controlNo: a Shanghai county code, a date within the two years before now
// and a six-digit serial. It never returns the same number twice.
func (g *Generator) SerialNo(now time.Time) string {
	for {
		day := now.In(g.loc).AddDate(0, 0, -g.rng.IntN(730))
		g.serial = (g.serial + 1 + g.rng.IntN(7)) % 1_000_000
		n := g.county() + day.Format("20060102") + fmt.Sprintf("%06d", g.serial)
		if !g.used[n] {
			g.used[n] = true
			return n
		}
	}
}

func (g *Generator) county() string { return ShanghaiCounties[g.rng.IntN(len(ShanghaiCounties))].Code }

func countyName(code string) string {
	for _, c := range ShanghaiCounties {
		if c.Code == code {
			return c.Name
		}
	}
	return ""
}

func (g *Generator) address(county string) string {
	return fmt.Sprintf("上海市%s%s%d号（虚构地址）", countyName(county), streets[g.rng.IntN(len(streets))], 1+g.rng.IntN(999))
}

func (g *Generator) unit(county string) string {
	return county + fmt.Sprintf("%06d", 10000+g.rng.IntN(990000))
}

func (g *Generator) basis(now time.Time) contracts.Basis {
	return contracts.Basis{
		DocNo:      fmt.Sprintf("沪公（测试）审字〔%d〕%d号", now.Year(), 1+g.rng.IntN(9999)),
		ApprovedBy: "上海市公安局（测试单位）",
		ApprovedAt: now.Add(-time.Duration(1+g.rng.IntN(72)) * time.Hour),
		Legal:      "《中华人民共和国人民警察法》第六条（测试数据）",
	}
}

// subset returns a non-empty subset of values, in their order.
func (g *Generator) subset(values []string) []string {
	for {
		var out []string
		for _, v := range values {
			if g.rng.IntN(2) == 0 {
				out = append(out, v)
			}
		}
		if len(out) > 0 {
			return out
		}
	}
}

func (g *Generator) regions() []string {
	switch g.rng.IntN(4) {
	case 0:
		return []string{contracts.Nationwide}
	case 1:
		return []string{"310000"}
	}
	var out []string
	seen := map[string]bool{}
	for range 1 + g.rng.IntN(3) {
		if c := g.county(); !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}

// ResidentIDNumber returns the GB 11643-1999 citizen identity number of a
// person registered in region, born on birth, with the three-digit
// sequence seq (odd: male, even: female) and its ISO 7064 MOD 11-2 check
// character.
func ResidentIDNumber(region string, birth time.Time, seq int) string {
	s := fmt.Sprintf("%s%s%03d", region, birth.Format("20060102"), seq%1000)
	return s + string(IDCheckChar(s))
}

var (
	idWeights    = [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}
	idCheckChars = "10X98765432"
)

// IDCheckChar returns the ISO 7064 MOD 11-2 check character of the first 17
// digits of s.
func IDCheckChar(s string) byte {
	sum := 0
	for i, w := range idWeights {
		sum += int(s[i]-'0') * w
	}
	return idCheckChars[sum%11]
}

// shanghai returns Asia/Shanghai, or UTC+08:00 without tzdata.
func shanghai() *time.Location {
	if loc, err := time.LoadLocation("Asia/Shanghai"); err == nil {
		return loc
	}
	return time.FixedZone("CST", 8*60*60)
}
