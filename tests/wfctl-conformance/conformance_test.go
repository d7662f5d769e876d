// wfctl's published IaC conformance suite (iac/conformance in GoCodeAlone/workflow, pinned in
// go.mod to the release scripts/wfctl.sh builds) run against the eventbus plugin, loaded the
// way wfctl loads it: wfctl's own external-plugin manager starts the packaged binary from a
// plugin directory, handshakes, reads its contract registry, then Initialize.
//
//	WFCTL_PLUGIN_DIR=<dir holding workflow-plugin-eventbus/> NATS_URL=nats://... go test ./...
//
// `just wfctl-e2e` sets both and counts the results.
package conformance_test

import (
	"context"
	"os"
	"testing"

	"github.com/GoCodeAlone/workflow/iac/conformance"
	"github.com/GoCodeAlone/workflow/iac/providerclient"
	"github.com/GoCodeAlone/workflow/interfaces"
	"github.com/GoCodeAlone/workflow/plugin/external"
	pb "github.com/GoCodeAlone/workflow/plugin/external/proto"
)

const plugin = "workflow-plugin-eventbus"

// loaded is the provider as wfctl holds it; Close stops the plugin process as wfctl does.
type loaded struct {
	*providerclient.Adapter
	manager *external.ExternalPluginManager
}

func (l loaded) Close() error {
	l.manager.Shutdown()
	return nil
}

func load(t *testing.T) interfaces.IaCProvider {
	t.Helper()
	dir := os.Getenv("WFCTL_PLUGIN_DIR")
	if dir == "" {
		t.Fatal("WFCTL_PLUGIN_DIR must name a plugin directory holding " + plugin + "/ (just wfctl-e2e sets it)")
	}
	manager := external.NewExternalPluginManager(dir, nil)
	adapter, err := manager.LoadPlugin(plugin)
	if err != nil {
		manager.Shutdown()
		t.Fatalf("wfctl's plugin manager cannot load %s from %s: %v", plugin, dir, err)
	}
	if err := adapter.ContractRegistryError(); err != nil {
		manager.Shutdown()
		t.Fatalf("GetContractRegistry: %v", err)
	}
	services := map[string]bool{}
	for _, c := range adapter.ContractRegistry().GetContracts() {
		if c.GetKind() == pb.ContractKind_CONTRACT_KIND_SERVICE {
			services[c.GetServiceName()] = true
		}
	}
	provider := providerclient.New(adapter.Conn(), services)
	// The iac.provider module's config, as wfctl passes it to Initialize.
	config := map[string]any{"provider": "eventbus"}
	if url := os.Getenv("NATS_URL"); url != "" {
		config["allow_nats"] = []any{url}
	}
	if err := provider.Initialize(context.Background(), config); err != nil {
		manager.Shutdown()
		t.Fatalf("Initialize: %v", err)
	}
	return loaded{Adapter: provider, manager: manager}
}

// Scenarios that drive resource types this provider does not serve. Each hard-codes a cloud
// provider's type (wfctl wrote the suite for DigitalOcean, AWS...) and, run anyway, fails on
// the plugin's correct answer for an unknown type: NotFound, "no driver for resource type".
// Their contract is checked on eventbus types by tests/bridge.rs (module conformance) and, for
// create/update/replace/delete through wfctl itself, by tests/wfctl_e2e.rs.
// EVENTBUS_CONFORMANCE_ALL=1 runs them too, to see those failures.
var foreignTypes = map[string]string{
	"Scenario_DeleteActionInApplyInvokesDriverDelete": "infra.vpc",
	"Scenario_DiffSurvivesGRPCRoundTrip":              "infra.vpc",
	"Scenario_NeedsReplaceTriggersReplaceAction":      "infra.vpc",
	"Scenario_OutputsConsistencyAcrossReadCycles":     "infra.compute",
	"Scenario_OutputsRefreshDetectsNewFields":         "infra.compute",
	"Scenario_ReplaceCascadePreservesDependents":      "infra.vpc and infra.app",
	"Scenario_UpsertOnAlreadyExists":                  "infra.compute",
}

func TestWfctlConformance(t *testing.T) {
	skip := map[string]string{}
	if os.Getenv("EVENTBUS_CONFORMANCE_ALL") == "" {
		for name, types := range foreignTypes {
			skip[name] = "it drives " + types + ", which the eventbus provider does not serve " +
				"(it serves infra.eventbus, infra.eventbus.stream, infra.eventbus.consumer)"
		}
	}
	conformance.Run(t, conformance.Config{
		Provider: func() interfaces.IaCProvider { return load(t) },
		// Every scenario, the cloud-gated ones too: the plugin's "cloud" is a local server.
		LiveCloud:     true,
		SkipScenarios: skip,
	})
}
