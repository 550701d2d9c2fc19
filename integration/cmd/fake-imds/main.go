// Command fake-imds serves internal/imdsfake (an IMDSv2-only EC2 metadata fake)
// on a loopback address, for `make demo` and manual runs:
//
//	fake-imds -config enis.json -listen 127.0.0.1:0 -ready /tmp/url
//
// Once it accepts connections it prints its base URL as the first line of
// stdout (and, with -ready, writes it to that file atomically), so a script
// can block on reading that line instead of sleeping. It exits on SIGTERM or
// SIGINT. It refuses to listen on anything but a
// loopback address.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ec2-policy-routes/ec2-policy-routes/internal/imdsfake"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to listen on")
	cfgPath := flag.String("config", "", "JSON config: {\"primaryMac\":..., \"enis\":[...], \"latency\":\"10ms\"}")
	ready := flag.String("ready", "", "file to write the base URL to once listening")
	flag.Parse()
	if err := run(*listen, *cfgPath, *ready); err != nil {
		log.SetFlags(0)
		log.Fatalf("fake-imds: %v", err)
	}
}

func run(listen, cfgPath, ready string) error {
	if cfgPath == "" {
		return errors.New("-config is required")
	}
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		return err
	}
	fake, err := imdsfake.FromConfig(data)
	if err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("-listen %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-listen %q: only loopback addresses are allowed", listen)
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	url := "http://" + l.Addr().String()
	if ready != "" {
		tmp := filepath.Join(filepath.Dir(ready), "."+filepath.Base(ready)+".tmp")
		if err := os.WriteFile(tmp, []byte(url+"\n"), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, ready); err != nil {
			return err
		}
	}
	fmt.Println(url)

	srv := &http.Server{Handler: fake, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	fake.Close()
	shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}
