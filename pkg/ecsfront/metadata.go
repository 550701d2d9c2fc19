package ecsfront

import (
	"context"
	"net"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plugin"
)

// noAltNames is the front's metadata source: IMDS facts without link
// altnames. The plugin records which altnames it added under /run, which
// the agent's container loses on every restart, so a later DEL could not
// tell ours from ec2-net-utils' — and the names would ride back to the host
// on the ENI. Everything else the front's DEL needs is in the kernel.
type noAltNames struct{ inner plugin.MetadataSource }

func (m noAltNames) Lookup(ctx context.Context, cfg *config.Config, mac net.HardwareAddr) (*plugin.ENIMetadata, error) {
	md, err := m.inner.Lookup(ctx, cfg, mac)
	if md != nil {
		md.AltNames = nil
	}
	return md, err
}
