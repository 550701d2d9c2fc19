#!/bin/sh
# ec2-policy-routes post-install (deb postinst, rpm %post), on install and
# upgrade: refresh the front binaries (vpc-eni, vpc-branch-eni) of every
# existing ECS front -- the directory /etc/ecs/ecs.config names in
# ECS_CNI_PLUGINS_PATH and the default one, each only if it holds the
# front's settings file -- atomically, so the ECS agent never runs an older
# plugin than this package holds. It never creates an install (that is
# `ec2-policy-routes ecs install`, run by the operator), never edits
# ecs.config and restarts nothing: the agent runs the new binary on its
# next plugin call. A failure is reported and does not fail the package.
# EC2PR_POSTINST_BIN / EC2PR_POSTINST_ECS_CONFIG exist for the package tests.
bin=${EC2PR_POSTINST_BIN:-/opt/cni/bin/ec2-policy-routes}
conf=${EC2PR_POSTINST_ECS_CONFIG:-/etc/ecs/ecs.config}
[ -x "$bin" ] || exit 0
CNI_COMMAND= "$bin" ecs refresh --quiet --ecs-config "$conf" ||
	echo "ec2-policy-routes: could not refresh the ECS front; run: ec2-policy-routes ecs install" >&2
exit 0
