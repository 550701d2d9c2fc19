// Command imdsfloor is the least an IMDSv2 lookup can cost a fresh
// process: the session token, then the keys the plugin asks first for an
// IPv4-only ENI (device-number, the MAC's listing, interface-id,
// local-ipv4s, subnet-ipv4-cidr-block), one after another on one kept-alive
// connection, as hand-written HTTP/1.1 — no SDK, no net/http, no
// goroutines. Built with the plugin's flags and timed against the same
// server, its cost above the empty binary is the floor under the IMDS
// on/off ratio `make bench` reports: no implementation that asks IMDS on
// every ADD does better on that machine.
//
//	imdsfloor http://127.0.0.1:PORT 0a:1e:00:00:0b:01
//
// Exit 0 when every answer was 200, 1 otherwise.
package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: imdsfloor http://HOST:PORT MAC")
		os.Exit(2)
	}
	if err := lookup(strings.TrimPrefix(os.Args[1], "http://"), strings.ToLower(os.Args[2])); err != nil {
		fmt.Fprintln(os.Stderr, "imdsfloor:", err)
		os.Exit(1)
	}
}

func lookup(addr, mac string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	if err := c.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return err
	}
	br := bufio.NewReader(c)
	token, err := exchange(c, br, "PUT /latest/api/token HTTP/1.1\r\nHost: "+addr+"\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n")
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	base := "/latest/meta-data/network/interfaces/macs/" + mac + "/"
	for _, key := range []string{"device-number", "", "interface-id", "local-ipv4s", "subnet-ipv4-cidr-block"} {
		req := "GET " + base + key + " HTTP/1.1\r\nHost: " + addr + "\r\nX-aws-ec2-metadata-token: " + token + "\r\n\r\n"
		if _, err := exchange(c, br, req); err != nil {
			return fmt.Errorf("%s: %w", base+key, err)
		}
	}
	return nil
}

// exchange writes req and reads one answer, which must be 200 with a
// Content-Length body; it returns the body.
func exchange(c net.Conn, br *bufio.Reader, req string) (string, error) {
	if _, err := io.WriteString(c, req); err != nil {
		return "", err
	}
	status, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	if f := strings.Fields(status); len(f) < 2 || f[1] != "200" {
		return "", fmt.Errorf("answer %q", strings.TrimSpace(status))
	}
	length := -1
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimSpace(line)
		if line == "" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Content-Length") {
			if length, err = strconv.Atoi(strings.TrimSpace(v)); err != nil {
				return "", fmt.Errorf("Content-Length %q", v)
			}
		}
	}
	if length < 0 {
		return "", fmt.Errorf("no Content-Length in the answer")
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(br, body); err != nil {
		return "", err
	}
	return string(body), nil
}
