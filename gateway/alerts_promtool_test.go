package gateway_test

import (
	"os"
	"os/exec"
	"testing"

	"go.yaml.in/yaml/v3"
)

const alertsTestFile = "../configs/alerts_test.yml"

// promtoolInstall is how to get promtool (Debian's prometheus package;
// .ci/run installs it).
const promtoolInstall = "apt-get install -y --no-install-recommends prometheus"

// The alert rules are checked by Prometheus's own tool: the file loads
// (promtool check rules), and each rule fires on the series it is for and
// stays silent on nearby ones (promtool test rules, configs/alerts_test.yml).
// A missing promtool fails the test: the rules would go unchecked.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (%v): install it with %s", err, promtoolInstall)
	}
	for _, args := range [][]string{
		{"check", "rules", "configs/alerts.yml"},
		{"test", "rules", "configs/alerts_test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = ".." // the file names are the repository's, as in make check-configs
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}

// Every alert has a test that fires it and one that expects silence.
func TestAlertRulesEachTested(t *testing.T) {
	var rules promRuleFile
	readYAML(t, alertsFile, &rules)
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	readYAML(t, alertsTestFile, &tests)
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			if !fires[r.Alert] {
				t.Errorf("%s: no test in %s where it fires", r.Alert, alertsTestFile)
			}
			if !silent[r.Alert] {
				t.Errorf("%s: no test in %s where it stays silent", r.Alert, alertsTestFile)
			}
		}
	}
	if n < len(dashRequiredAlerts) {
		t.Fatalf("only %d alerts read from %s", n, alertsFile)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
