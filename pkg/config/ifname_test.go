package config

import "testing"

// TestValidateIfNameKernelRules: every name the kernel's dev_valid_name
// rejects, and every control character, fails at parse time (code 7 at
// once) instead of reaching the link lookup and failing only at
// linkTimeout. Regression: \r, \v, \f, \x01 and byte 0xa0 were accepted.
func TestValidateIfNameKernelRules(t *testing.T) {
	for _, bad := range []string{
		"a\rb", "a\vb", "a\fb", "a\x01b", "a\x1bb", "a\x7fb", "a\xa0b", "\u00e0", // 0xa0 is isspace() to the kernel; "à" is C3 A0
		"eth0\n", "\teth0", "a/b", "a:b", "a b", ".", "..", "", "0123456789abcdef",
	} {
		if err := ValidateIfName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for _, ok := range []string{"eth0", "a", "ecs1a2b3c4d5e6f", "eni-0a1b2c3d", "é", "x.y", "x-y_z", "a%d", "012345678901234"} {
		if err := ValidateIfName(ok); err != nil {
			t.Errorf("%q rejected: %v", ok, err)
		}
	}
}
