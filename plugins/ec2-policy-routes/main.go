// Command ec2-policy-routes is a CNI plugin that installs per-ENI source
// policy routing inside a task's network namespace.
package main

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/blocking"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/ecsfront"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plugin"
)

// Version is set at link time (-ldflags "-X main.Version=...").
var Version = "dev"

func main() {
	// Installed as vpc-eni/vpc-branch-eni for the ECS agent: act as the
	// front for the real plugin of that name (package ecsfront).
	if name := filepath.Base(os.Args[0]); ecsfront.IsFronted(name) {
		os.Exit(ecsfront.Main(name, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	if code, ok := command(os.Args[1:], os.Stdout, os.Stderr); ok {
		os.Exit(code)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	// SIGTERM/SIGINT end a wait (link, namespace lock, IMDS) with code 11.
	// The handler is installed when the plugin is about to wait
	// (blocking.Ahead), not here: at startup it cost every invocation
	// ~0.4 ms, more on a busy host (see package blocking).
	var watch sync.Once
	ctx = blocking.WithHook(ctx, func() {
		watch.Do(func() {
			sigs := make(chan os.Signal, 1)
			signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
			go func() {
				<-sigs
				cancel(plugin.ErrSignal())
			}()
		})
	})

	p := &plugin.Plugin{Ctx: ctx, Metadata: plugin.NewIMDSMetadata()}
	p.NewLogger = newLogger
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    p.Add,
		Del:    p.Del,
		Check:  p.Check,
		Status: p.Status,
		GC:     p.GC,
	}, version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"), "ec2-policy-routes "+Version)
}
