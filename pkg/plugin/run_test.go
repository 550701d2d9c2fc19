package plugin

import (
	"errors"
	"io"
	"os"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/ec2-policy-routes/ec2-policy-routes/internal/netnstest"
)

// Run (the ECS front's entry) performs ADD, CHECK and DEL like the verbs
// but prints nothing on stdout: the front prints the upstream's result.
// Needs root for the namespace; skips otherwise.
func TestRunPrintsNothing(t *testing.T) {
	nsh, nl := netnstest.New(t)
	testENI(t, nl, "eth0", "peer0", "", "10.0.1.25/24")
	stdin := `{"cniVersion":"1.0.0","name":"n","type":"ec2-policy-routes","imds":{"enabled":false},"prevResult":` +
		`{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"` + netnsPath(nsh) + `"}],"ips":[{"address":"10.0.1.25/24","gateway":"10.0.1.1","interface":0}]}}`
	args := &skel.CmdArgs{ContainerID: "c", IfName: "eth0", Netns: netnsPath(nsh), StdinData: []byte(stdin)}
	p := &Plugin{StateDir: t.TempDir()}
	stdout := captureStdout(t, func() {
		for _, verb := range []string{"ADD", "CHECK", "DEL"} {
			out, err := p.Run(verb, args)
			if err != nil {
				t.Errorf("%s: %v", verb, err)
			}
			if verb == "ADD" && (len(out.Tables) != 1 || len(out.Added) == 0) {
				t.Errorf("ADD outcome %+v", out)
			}
			if verb == "DEL" && len(out.Removed) == 0 {
				t.Errorf("DEL outcome %+v", out)
			}
		}
	})
	if len(stdout) != 0 {
		t.Fatalf("Run printed %q", stdout)
	}
	if p.Ctx != nil {
		t.Fatal("Run left its context on the plugin")
	}
}

func TestRunRefusesOtherVerbs(t *testing.T) {
	_, err := (&Plugin{}).Run("GC", &skel.CmdArgs{})
	var te *types.Error
	if !errors.As(err, &te) || te.Code != types.ErrInvalidEnvironmentVariables {
		t.Fatalf("err %v", err)
	}
}

func captureStdout(t *testing.T, fn func()) []byte {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stdout
	os.Stdout = w
	done := make(chan []byte)
	go func() { b, _ := io.ReadAll(r); done <- b }()
	fn()
	os.Stdout = saved
	_ = w.Close()
	return <-done
}
