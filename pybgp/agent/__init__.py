"""The node agent (Felix's role): what etcd says, made into this node's dataplane.

Owns, on its node and nothing else: the ``/32`` routes of its workloads
(route protocol 80), their PERMANENT neighbour entries and interface
sysctls, the iptables chains named ``cali-`` with the one hook rule per
built-in chain that jumps to them (every rule tagged ``cali:<hash>``), the
ipsets named ``cali40…`` (``cali4t…`` while one is replaced), and the
endpoint status keys under ``/calico/felix/v2/no-region/host/<node>/``.

Layers, imports pointing down only (pure core, thin shell):

- pure, no I/O, unit-tested without root: :mod:`.config` (the effective
  FelixConfiguration), :mod:`.selectors` (Calico's v3 → v1 selector
  rewriting, ipset names), :mod:`.rules` (one Calico rule → iptables rule
  bodies), :mod:`.inputs` (etcd updates → typed values), :mod:`.calc` (the
  whole desired dataplane from the inputs), :mod:`.routegrace` (which
  workload routes no endpoint explains yet to leave alone for now),
  :mod:`.metrics`, and the planning halves of :mod:`.iptables` and :mod:`.ipsets` (read-back
  parsing, restore texts);
- shell: the subprocess halves of :mod:`.iptables` / :mod:`.ipsets`,
  :mod:`.dataplane` (one batched apply: ``ipset restore``, one
  ``iptables-restore --noflush``, netlink through :mod:`pybgp.kernel_sync`),
  :mod:`.status` (endpoint status in etcd), :mod:`.health` (HTTP servers);
- :mod:`.daemon`: one asyncio loop that wires syncers, the kernel monitor,
  refresh timers and the apply.

It builds on :mod:`pybgp.model` (resources, the one selector parser),
:mod:`pybgp.datastore` (syncers) and :mod:`pybgp.kernel_sync` (netlink);
it never imports the speaker, the reflector or the CNI plugin — they meet
it in etcd and in the kernel.

Must never: write to the kernel before the datastore is in sync; touch a
chain, rule, set, route or neighbour entry that is not marked as its own
(other chains, Docker's or kube-proxy's rules, the speaker's protocol-12
routes); flush anything on start, resync or exit; or let a rule it cannot
render match more traffic than the Calico rule allows.
"""
