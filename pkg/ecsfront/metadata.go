package ecsfront

import (
	"context"
	"net"

	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/config"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/imds"
	"github.com/ec2-policy-routes/ec2-policy-routes/pkg/plugin"
)

// noAltNames is the front's metadata source: IMDS facts without link
// altnames. The plugin records which altnames it added under /run, which
// the agent's container loses on every restart, so a later DEL could not
// tell ours from ec2-net-utils' — and the names would ride back to the host
// on the ENI. Everything else the front's DEL needs is in the kernel.
type noAltNames struct{ plugin.MetadataSource }

func (m noAltNames) Open(cfg *config.Config) plugin.MetadataSession {
	return noAltNamesSession{m.MetadataSource.Open(cfg)}
}

// noAltNamesSession keeps the session's other methods (token priming,
// request counts) as they are.
type noAltNamesSession struct{ plugin.MetadataSession }

func (s noAltNamesSession) Lookup(ctx context.Context, mac net.HardwareAddr, await imds.AwaitListing) (*plugin.ENIMetadata, error) {
	md, err := s.MetadataSession.Lookup(ctx, mac, await)
	if md != nil {
		md.AltNames = nil
	}
	return md, err
}
