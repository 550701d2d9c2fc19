package plan

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

var (
	taskA = Attachment{ContainerID: "taskA", IfName: "eth0"}
	taskB = Attachment{ContainerID: "taskB", IfName: "eth0"}
)

const (
	macA = "0a:00:00:00:00:0a"
	macB = "0a:00:00:00:00:0b"
)

func TestMarkNamesTheAttachment(t *testing.T) {
	marks := map[string]bool{}
	for _, m := range []string{
		taskA.Mark("eth0"), taskB.Mark("eth0"), taskA.Mark("eth1"),
		Attachment{ContainerID: "taskA", IfName: "eth1"}.Mark("eth0"),
		Attachment{ContainerID: "task", IfName: "Aeth0"}.Mark("eth0"), // no ambiguity by concatenation
	} {
		if !IsMark(m) || len(m) > 255 || marks[m] {
			t.Errorf("mark %q: not a distinct valid mark", m)
		}
		marks[m] = true
	}
	if first, again := taskA.Mark("eth0"), taskA.Mark("eth0"); first != again {
		t.Error("mark is not stable")
	}
	long := Attachment{ContainerID: strings.Repeat("x", 4096), IfName: "eth0"}.Mark("eth0")
	if len(long) != len(taskA.Mark("eth0")) {
		t.Errorf("mark length depends on the IDs: %d", len(long))
	}
	if IsMark("uplink to rack 3") {
		t.Error("foreign alias taken for a mark")
	}
}

// OwnLinks is the one place DEL and CHECK decide which link is the
// attachment's; each case is a fault seen in real namespaces (issue 12).
func TestOwnLinks(t *testing.T) {
	markA, markB := taskA.Mark("eth0"), taskB.Mark("eth0")
	tests := []struct {
		name      string
		att       Attachment
		claim     Claim
		links     []Link
		index     int
		ambiguous bool
		foreign   bool
		why       string
	}{
		{"own mark, no MAC", taskA, Claim{Name: "eth0"},
			[]Link{{Index: 2, Name: "eth0", MAC: macA, Alias: markA}}, 2, false, false, ""},
		{"another task's DEL (PID reused): mark says taskA", taskB, Claim{Name: "eth0"},
			[]Link{{Index: 2, Name: "eth0", MAC: macA, Alias: markA}}, 0, false, true, "belongs to another attachment"},
		{"another task's DEL naming another MAC", taskB, Claim{Name: "eth0", MAC: macB},
			[]Link{{Index: 2, Name: "eth0", MAC: macA, Alias: markA}}, 0, false, false, "interface eth0 is missing (no link with MAC " + macB + ")"},
		{"prevResult MAC on no link: the link ADD marked for this attachment", taskA, Claim{Name: "eth0", MAC: macB},
			[]Link{{Index: 2, Name: "eth0", MAC: macA, Alias: markA}}, 2, false, false, ""},
		{"MAC names the link, even unmarked", taskA, Claim{Name: "eth0", MAC: strings.ToUpper(macA)},
			[]Link{{Index: 2, Name: "eth0", MAC: macA}}, 2, false, false, ""},
		{"MAC names a link another attachment marked", taskB, Claim{Name: "eth0", MAC: macA},
			[]Link{{Index: 2, Name: "eth0", MAC: macA, Alias: markA}}, 0, false, true, "marked as another attachment's"},
		{"renamed link found by mark", taskA, Claim{Name: "eth0"},
			[]Link{{Index: 3, Name: "eth0", MAC: macB, Alias: markB}, {Index: 2, Name: "other", MAC: macA, Alias: markA}}, 2, false, false, ""},
		{"renamed link found by MAC", taskA, Claim{Name: "eth0", MAC: macA},
			[]Link{{Index: 2, Name: "other", MAC: macA}, {Index: 3, Name: "eth0", MAC: macB}}, 2, false, false, ""},
		{"shared MAC (ipvlan): the marked one", taskA, Claim{Name: "eth0", MAC: macA},
			[]Link{{Index: 2, Name: "eth9", MAC: macA}, {Index: 3, Name: "other", MAC: macA, Alias: markA}}, 3, false, false, ""},
		{"shared MAC (ipvlan): the one by name", taskA, Claim{Name: "eth0", MAC: macA},
			[]Link{{Index: 2, Name: "eth9", MAC: macA}, {Index: 3, Name: "eth0", MAC: macA}}, 3, false, false, ""},
		{"unmarked link by name: ambiguous (ADD by an older version)", taskB, Claim{Name: "eth0"},
			[]Link{{Index: 2, Name: "eth0", MAC: macA}}, 2, true, false, ""},
		{"foreign alias is no mark: ambiguous", taskB, Claim{Name: "eth0"},
			[]Link{{Index: 2, Name: "eth0", MAC: macA, Alias: "uplink"}}, 2, true, false, ""},
		{"nothing by that name", taskA, Claim{Name: "eth0"},
			[]Link{{Index: 1, Name: "lo"}}, 0, false, false, "interface eth0 is missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := OwnLinks(tc.att, []Claim{tc.claim}, tc.links)
			if len(got) != 1 {
				t.Fatalf("got %d results", len(got))
			}
			o := got[0]
			if o.Index != tc.index || o.Ambiguous != tc.ambiguous || o.Foreign != tc.foreign || !strings.Contains(o.Why, tc.why) {
				t.Errorf("got %+v; want index %d ambiguous %v foreign %v why ~%q", o, tc.index, tc.ambiguous, tc.foreign, tc.why)
			}
		})
	}
}

func TestReleased(t *testing.T) {
	links := []Link{
		{Index: 2, Name: "other", MAC: macA, Alias: taskA.Mark("eth0")},
		{Index: 3, Name: "eth0", MAC: macB, Alias: taskB.Mark("eth0")},
		{Index: 4, Name: "eth1", MAC: "0a:00:00:00:00:0c"},
	}
	byLink := map[int]int{2: 10000, 3: 10001, 4: 10002}
	tests := []struct {
		name   string
		att    Attachment
		claims []Claim
		tables []int
		unmark []int
	}{
		{"taskA's DEL takes its renamed link's table and clears its mark", taskA, []Claim{{Name: "eth0"}}, []int{10000, 10009}, []int{2}},
		{"taskB's DEL with taskA's old MAC takes nothing of taskA's", taskB, []Claim{{Name: "eth0", MAC: macA}}, []int{10009}, nil},
		{"unmarked link by name: table released, nothing to unmark", taskA, []Claim{{Name: "eth1"}}, []int{10002, 10009}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			owned := OwnLinks(tc.att, tc.claims, links)
			r := Released(tc.att, owned, links, byLink, map[int]bool{10009: true})
			if got := slices.Sorted(maps.Keys(r.Tables)); !slices.Equal(got, tc.tables) {
				t.Errorf("tables %v, want %v", got, tc.tables)
			}
			if !slices.Equal(r.Unmark, tc.unmark) {
				t.Errorf("unmark %v, want %v", r.Unmark, tc.unmark)
			}
		})
	}
}

func TestMarking(t *testing.T) {
	markA := taskA.Mark("eth0")
	tests := []struct {
		name    string
		links   []Link
		changes []AliasChange
		skipped int
	}{
		{"fresh link gets the mark", []Link{{Index: 2, Name: "eth0"}}, []AliasChange{{2, markA}}, 0},
		{"already marked: nothing", []Link{{Index: 2, Name: "eth0", Alias: markA}}, nil, 0},
		{"taken over from another attachment's mark", []Link{{Index: 2, Name: "eth0", Alias: taskB.Mark("eth0")}}, []AliasChange{{2, markA}}, 0},
		{"foreign alias kept", []Link{{Index: 2, Name: "eth0", Alias: "uplink"}}, nil, 1},
		{"the same mark on a renamed old link moves", []Link{{Index: 2, Name: "eth0"}, {Index: 5, Name: "old", Alias: markA}},
			[]AliasChange{{2, markA}, {5, ""}}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			changes, skipped := Marking(taskA, map[string]int{"eth0": 2}, tc.links)
			if !slices.Equal(changes, tc.changes) || len(skipped) != tc.skipped {
				t.Errorf("changes %+v skipped %q; want %+v and %d skipped", changes, skipped, tc.changes, tc.skipped)
			}
		})
	}
}
