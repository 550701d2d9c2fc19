// Package conf embeds the shipped configuration files that the binary itself
// writes to a host (the package installs the same files from this directory).
package conf

import _ "embed"

// UdevRule is udev/99-vpc-policy-routes.rules, the override of
// ec2-net-utils' udev rule.
//
//go:embed udev/99-vpc-policy-routes.rules
var UdevRule []byte
