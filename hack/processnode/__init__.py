"""The process node: a DEV-ONLY node agent that runs pods as plain host processes.

It gives NO isolation whatsoever: no containers, no namespaces, no cgroups, no resource limits, no security
context, no image (the image is ignored). Every pod runs as the agent's user with the agent's environment and full
access to the machine. It exists only so that `make demo` and the tests can train for real (real torch processes)
on one machine, against a real API server and scheduler. Never point it at a cluster you care about.

What it does (details in docs/process-node.md):

- registers a Node with the declared capacity (cpu, memory, pods, `nvidia.com/gpu`: fake GPUs) and the label
  `elastic.training/process-node=true`; keeps it Ready (status heartbeat, a Lease in kube-node-lease renewed every
  10 s); deletes it (or leaves it NotReady) on shutdown;
- watches the pods bound to it; runs each pod's first container's `command + args` as a host process group, with
  a distinct loopback pod IP (127.<block>.x.y), the container's env (literal values, Secret/ConfigMap refs,
  field refs) plus POD_IP, cwd a per-pod scratch dir; volumes become host dirs and mount paths that appear in
  env values, command or args are replaced by those dirs;
- reports pod status as a kubelet does and honours deletion (SIGTERM, grace period, SIGKILL, delete with grace 0);
- keeps each pod's output in `<state-dir>/logs/<namespace>_<pod>.log` (`python -m hack.processnode logs ns/pod`).

Start one from a test or the demo as a subprocess (preferred):

    handle = spawn_process_node(name="pn-0", state_dir=tmp / "pn-0", kubeconfig=cluster.kubeconfig, gpus=4)
    ...
    handle.stop()

or in a background thread: `node = ProcessNode(ProcessNodeConfig(...)); node.start(); ...; node.stop()`.
"""

from hack.processnode.node import PROCESS_NODE_LABEL, ProcessNode, ProcessNodeConfig
from hack.processnode.spawn import ProcessNodeHandle, spawn_process_node

__all__ = ["PROCESS_NODE_LABEL", "ProcessNode", "ProcessNodeConfig", "ProcessNodeHandle", "spawn_process_node"]
