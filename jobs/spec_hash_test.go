package jobs

import (
	"encoding/json"
	"testing"
)

// The hash a deal binds: stable against a golden value (a change of the
// canonical form must come with a new SpecHashVersion), independent of
// field order and of empty optional fields, and different for any change
// of what the spec asks.
func TestSpecHash(t *testing.T) {
	base := `{"name":"n","image":"img:1","command":["python3"],"args":["train.py"],"env":{"B":"2","A":"1"},"resources":{"gpus":1,"cpu":1.5,"memory_mib":512},"timeouts":{"execution":"10m"},"max_price":"2"}`
	hash := func(js string) string {
		t.Helper()
		var s Spec
		if err := json.Unmarshal([]byte(js), &s); err != nil {
			t.Fatal(err)
		}
		h, err := s.Hash()
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	h := hash(base)
	for _, c := range []struct {
		name string
		js   string
		same bool
	}{
		{"reordered", `{"max_price":"2","timeouts":{"execution":"10m"},"resources":{"memory_mib":512,"cpu":1.5,"gpus":1},"env":{"A":"1","B":"2"},"args":["train.py"],"command":["python3"],"image":"img:1","name":"n"}`, true},
		{"empty optional fields", `{"name":"n","image":"img:1","command":["python3"],"args":["train.py"],"env":{"B":"2","A":"1"},"inputs":[],"outputs":[],"resources":{"gpus":1,"cpu":1.5,"memory_mib":512,"disk_mib":0},"timeouts":{"execution":"10m"},"max_price":"2","retry":{}}`, true},
		{"longer execution", `{"name":"n","image":"img:1","command":["python3"],"args":["train.py"],"env":{"B":"2","A":"1"},"resources":{"gpus":1,"cpu":1.5,"memory_mib":512},"timeouts":{"execution":"1000h"},"max_price":"2"}`, false},
		{"more memory", `{"name":"n","image":"img:1","command":["python3"],"args":["train.py"],"env":{"B":"2","A":"1"},"resources":{"gpus":1,"cpu":1.5,"memory_mib":513},"timeouts":{"execution":"10m"},"max_price":"2"}`, false},
		{"other env", `{"name":"n","image":"img:1","command":["python3"],"args":["train.py"],"env":{"B":"2","A":"x"},"resources":{"gpus":1,"cpu":1.5,"memory_mib":512},"timeouts":{"execution":"10m"},"max_price":"2"}`, false},
		{"args split differently", `{"name":"n","image":"img:1","command":["python3","train.py"],"env":{"B":"2","A":"1"},"resources":{"gpus":1,"cpu":1.5,"memory_mib":512},"timeouts":{"execution":"10m"},"max_price":"2"}`, false},
	} {
		if got := hash(c.js); (got == h) != c.same {
			t.Errorf("%s: hash %s, base %s: want same=%v", c.name, got, h, c.same)
		}
	}
	const specHashGolden = "d2f695298ef56b7294038bc4910dafc11dc37da6528aedb926871c7999f78feb"
	if h != specHashGolden {
		t.Errorf("hash of the base spec is %s, was %s: the canonical form changed; bump SpecHashVersion and update the golden value", h, specHashGolden)
	}
}
