package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestCommandDispatch(t *testing.T) {
	t.Setenv("CNI_COMMAND", "")
	Version = "1.2.3-test"
	run := func(args ...string) (int, bool, string, string) {
		var out, errb bytes.Buffer
		code, ok := command(args, &out, &errb)
		return code, ok, out.String(), errb.String()
	}
	if code, ok, out, _ := run("--version"); !ok || code != 0 || out != "ec2-policy-routes 1.2.3-test\n" {
		t.Errorf("--version: %d %v %q", code, ok, out)
	}
	if code, ok, out, _ := run("--help"); !ok || code != 0 || !strings.Contains(out, "doctor") || !strings.Contains(out, "EC2_POLICY_ROUTES_LOG_FILE") {
		t.Errorf("--help: %d %v %q", code, ok, out)
	}
	if code, ok, _, errs := run("frobnicate"); !ok || code != 2 || !strings.Contains(errs, `unknown command "frobnicate"`) {
		t.Errorf("unknown: %d %v %q", code, ok, errs)
	}
	if code, ok, _, _ := run("doctor", "--bogus-flag"); !ok || code != 2 {
		t.Errorf("doctor usage error: %d %v", code, ok)
	}
	if code, ok, _, _ := run("repair", "--bogus-flag"); !ok || code != 2 {
		t.Errorf("repair usage error: %d %v", code, ok)
	}
	if _, _, out, _ := run("--help"); !strings.Contains(out, "repair [--apply] [--json]") {
		t.Errorf("--help lacks repair: %q", out)
	}
	if code, ok, _, errs := run("ecs"); !ok || code != 2 || !strings.Contains(errs, "ecs install") {
		t.Errorf("ecs without a verb: %d %v %q", code, ok, errs)
	}
	if code, ok, _, _ := run("ecs", "install", "--bogus"); !ok || code != 2 {
		t.Errorf("ecs usage error: %d %v", code, ok)
	}
	if _, _, out, _ := run("--help"); !strings.Contains(out, "ecs install") {
		t.Errorf("--help lacks ecs install: %q", out)
	}
	// No arguments: skel's "about" output, as before.
	if _, ok, _, _ := run(); ok {
		t.Error("bare invocation must stay with skel")
	}
	// A runtime invocation is never taken over, whatever the arguments.
	t.Setenv("CNI_COMMAND", "ADD")
	if _, ok, _, _ := run("doctor"); ok {
		t.Error("CNI_COMMAND set but handled as a person's command")
	}
}
