// kfp-compile does to a compiled pipeline package what KFP's API server (2.14.3) does when a
// run or a recurring run is created from it, with KFP's own code: template.New parses and
// validates the pipeline spec and its Kubernetes platform spec (protojson: an unknown field is an
// error), RunWorkflow checks the run's parameters and compiles it with the Argo compiler
// (backend/src/v2/compiler/argocompiler), then Argo's validation checks the Workflow, as the API
// server's CreateRun does; ScheduledWorkflow builds the recurring run's resource.
// It prints the Argo Workflow (or, with -cron, the ScheduledWorkflow) as YAML; a package the
// API server would refuse exits 1 with the API server's message.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/kubeflow/pipelines/backend/src/apiserver/config/proxy"
	"github.com/kubeflow/pipelines/backend/src/apiserver/model"
	"github.com/kubeflow/pipelines/backend/src/apiserver/template"
	swfapi "github.com/kubeflow/pipelines/backend/src/crd/pkg/apis/scheduledworkflow/v1beta1"
	"sigs.k8s.io/yaml"
)

func main() {
	params := flag.String("params", "{}", "the run's parameter values as a JSON object")
	name := flag.String("name", "flywheel-run", "the run's display name")
	namespace := flag.String("namespace", "", "the namespace the run is created in")
	serviceAccount := flag.String("service-account", "", "the run's service account (KFP's default when empty)")
	runID := flag.String("run-id", "00000000-0000-0000-0000-000000000000", "the run's UUID")
	pipelineRoot := flag.String("pipeline-root", "", "the run's pipeline root")
	cron := flag.String("cron", "", "print the recurring run's ScheduledWorkflow for this cron schedule instead")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: kfp-compile [flags] PIPELINE.yaml\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	// The API server reads its proxy settings from its environment at start; so does this.
	proxy.InitializeConfigWithEnv()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *params, *name, *namespace, *serviceAccount, *runID, *pipelineRoot, *cron); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", flag.Arg(0), err)
		os.Exit(1)
	}
}

func run(path, params, name, namespace, serviceAccount, runID, pipelineRoot, cron string) error {
	var values map[string]any
	if err := json.Unmarshal([]byte(params), &values); err != nil {
		return fmt.Errorf("-params is not a JSON object: %w", err)
	}
	packageBytes, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	tmpl, err := template.New(packageBytes, false, nil)
	if err != nil {
		return err
	}
	spec := model.PipelineSpec{RuntimeConfig: model.RuntimeConfig{Parameters: params, PipelineRoot: pipelineRoot}}
	var out any
	if cron != "" {
		job := &model.Job{DisplayName: name, K8SName: name, Namespace: namespace, ServiceAccount: serviceAccount,
			Enabled: true, MaxConcurrency: 1, NoCatchup: true, PipelineSpec: spec,
			Trigger: model.Trigger{CronSchedule: model.CronSchedule{Cron: &cron}}}
		swf, swfErr := tmpl.ScheduledWorkflow(job)
		if swfErr == nil {
			// The API server's clientset sends it as the version the clientset speaks, whatever
			// the object says (the template writes kubeflow.org/v2beta1; the CRD serves v1beta1).
			swf.APIVersion = swfapi.SchemeGroupVersion.String()
		}
		out, err = swf, swfErr
	} else {
		execution, runErr := tmpl.RunWorkflow(&model.Run{DisplayName: name, Namespace: namespace,
			ServiceAccount: serviceAccount, PipelineSpec: spec}, template.RunWorkflowOptions{RunId: runID})
		if runErr == nil {
			// Argo's own validation, which the API server runs before it creates the Workflow.
			if runErr = execution.Validate(false, false); runErr != nil {
				runErr = fmt.Errorf("Failed to validate workflow: %w", runErr)
			}
		}
		out, err = execution, runErr
	}
	if err != nil {
		return err
	}
	text, err := yaml.Marshal(out)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(text)
	return err
}
