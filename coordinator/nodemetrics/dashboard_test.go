package nodemetrics

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestDashboardUsesExportedMetrics keeps deploy/grafana/colony.json honest:
// every colony_* series its queries name is one this package exports.
func TestDashboardUsesExportedMetrics(t *testing.T) {
	data, err := os.ReadFile("../../deploy/grafana/colony.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}

	exported := map[string]bool{}
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		for _, c := range append(New().Collectors(), NewCollector(nil)) {
			c.Describe(ch)
		}
		close(ch)
	}()
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			exported[m[1]] = true
		}
	}

	if len(exported) < 20 {
		t.Fatalf("found only %d exported metric names: %v", len(exported), exported)
	}
	series := regexp.MustCompile(`\bcolony_[a-z_]+`)
	queries := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			queries++
			for _, name := range series.FindAllString(tg.Expr, -1) {
				base := name
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(name, suffix); ok && exported[b] {
						base = b
					}
				}
				if !exported[base] {
					t.Errorf("panel %q queries %s, which the coordinator does not export", p.Title, name)
				}
			}
		}
	}
	if queries < 10 {
		t.Errorf("dashboard has %d queries; expected a full dashboard", queries)
	}
}
