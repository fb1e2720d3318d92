//! Integration tests. They run against the real kube-apiserver named by
//! `KUBECONFIG`; `make test` starts one on loopback and sets it.

mod auth;
mod chart;
mod chart_values;
mod control_plane;
mod deploy;
mod destinations;
mod egress;
mod fair_shares;
mod faults;
mod hostile_remotes;
mod identity;
mod idle;
mod intake;
mod intake_hardening;
mod jaeger;
mod jobs;
mod lifecycle;
mod network_policies;
mod operator;
mod payloads;
mod plugin;
mod processes;
mod proxy;
mod quiet;
mod receivers;
mod require_destination;
mod scale;
mod secret_access;
mod signing;
mod support;
mod targets;
mod tenant_memory;
mod tracing;
mod user_paths;
mod validation;
