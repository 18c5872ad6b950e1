//! Running parsed scenario lines on a [`Machine`].

use std::collections::BTreeMap;

use hwbp_core::arch::arm64::Arm64;
use hwbp_core::arch::power::Power;
use hwbp_core::arch::x86_64::X86_64;
use hwbp_core::arch::ParseCtx;
use hwbp_core::attr::BpAttr;
use hwbp_core::manager::{BpError, BpId};
use hwbp_core::reserve::{Target, TaskId};
use hwbp_core::spec::Region;
use hwbp_core::Access;

use super::parse::{Command, Line, Watch};
use super::{Failure, Report, ScenarioError};
use crate::arch_glue::SimArch;
use crate::machine::Machine;

/// Unprivileged user-space requests, as a normal user's perf or debugger makes them.
const USER: ParseCtx = ParseCtx {
    task_bound: false,
    cap_sys_admin: false,
};

pub(super) fn run_lines(lines: &[Line], file: &str) -> Result<Report, ScenarioError> {
    let err = |line: usize, message: String| ScenarioError {
        file: file.to_string(),
        line,
        message,
    };
    let mut arch = "x86_64".to_string();
    let mut slots = None;
    let mut cpus = 2;
    let mut report = Report::default();
    let mut body = 0;
    for line in lines {
        match &line.command {
            Command::Arch(a) => arch = a.clone(),
            Command::Slots { data, inst } => slots = Some((*data, *inst)),
            Command::Cpus(n) => cpus = *n,
            _ => break,
        }
        check(&mut report, file, line, "ok".into());
        body += 1;
    }
    let rest = &lines[body..];
    if let Some(l) = rest.iter().find(|l| {
        matches!(
            l.command,
            Command::Arch(_) | Command::Slots { .. } | Command::Cpus(_)
        )
    }) {
        return Err(err(
            l.number,
            "arch, slots and cpus must come before every other command".into(),
        ));
    }
    let first = lines.first().map_or(0, |l| l.number);
    match arch.as_str() {
        "x86_64" => Runner::start(X86_64::new(), slots, cpus, file, first)?.run(rest, report),
        "arm64" => Runner::start(Arm64::new(), slots, cpus, file, first)?.run(rest, report),
        "power9" => Runner::start(Power::power9(), slots, cpus, file, first)?.run(rest, report),
        "power10" => Runner::start(Power::power10(), slots, cpus, file, first)?.run(rest, report),
        other => Err(err(
            first,
            format!("unknown arch `{other}`; use x86_64, arm64, power9 or power10"),
        )),
    }
}

fn check(report: &mut Report, file: &str, line: &Line, actual: String) {
    report.output.push(format!("{} => {actual}", line.text));
    let Some(expected) = &line.expected else {
        return;
    };
    report.checked += 1;
    if !same(&line.command, expected, &actual) {
        report.failures.push(Failure {
            file: file.to_string(),
            line: line.number,
            command: line.text.clone(),
            expected: expected.clone(),
            actual,
        });
    }
}

/// Compares an expectation with an outcome: hit lists as sets, numbers by value, register
/// dumps ignoring spacing, everything else exactly.
fn same(command: &Command, expected: &str, actual: &str) -> bool {
    let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    match command {
        Command::Access { .. } => {
            let norm = |s: &str| {
                let s = words(s);
                match s.strip_prefix("hit ") {
                    Some(names) => {
                        let mut v: Vec<String> =
                            names.split(',').map(|n| n.trim().to_string()).collect();
                        v.sort();
                        format!("hit {}", v.join(","))
                    }
                    None => s,
                }
            };
            norm(expected) == norm(actual)
        }
        Command::Peek { .. } | Command::Count(_) => {
            match (
                hwbp_core::spec::parse_u64(expected),
                hwbp_core::spec::parse_u64(actual),
            ) {
                (Some(e), Some(a)) => e == a,
                _ => expected == actual,
            }
        }
        _ => words(expected) == words(actual),
    }
}

struct Runner<A: SimArch> {
    machine: Machine<A>,
    file: String,
    tasks: BTreeMap<String, TaskId>,
    bps: BTreeMap<String, Vec<BpId>>,
    hits: Vec<BpId>,
}

fn outcome<T>(r: Result<T, BpError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => e.class().errno_name().into(),
    }
}

fn attr(watch: &Watch, disabled: bool) -> BpAttr {
    let default_len = if watch.access == Access::Execute {
        8
    } else {
        4
    };
    BpAttr {
        addr: watch.addr,
        len_bytes: watch.len_bytes.unwrap_or(default_len),
        bp_type: watch.access.bp_type(),
        exclude_kernel: true,
        disabled,
    }
}

impl<A: SimArch> Runner<A> {
    fn start(
        arch: A,
        slots: Option<(u32, Option<u32>)>,
        cpus: u32,
        file: &str,
        line: usize,
    ) -> Result<Runner<A>, ScenarioError> {
        let arch = match slots {
            None => arch,
            Some((data, inst)) => {
                arch.with_pool_sizes(data, inst)
                    .ok_or_else(|| ScenarioError {
                        file: file.to_string(),
                        line,
                        message: format!(
                    "this arch cannot have data={data} inst={inst:?} slots (x86: 1..=4 shared, \
                     arm64: 2..=16 of each, power9: data=1, power10: data=2)"
                ),
                    })?
            }
        };
        Ok(Runner {
            machine: Machine::new(arch, cpus),
            file: file.to_string(),
            tasks: BTreeMap::new(),
            bps: BTreeMap::new(),
            hits: Vec::new(),
        })
    }

    fn malformed(&self, line: &Line, message: String) -> ScenarioError {
        ScenarioError {
            file: self.file.clone(),
            line: line.number,
            message,
        }
    }

    fn task(&self, line: &Line, name: &str) -> Result<TaskId, ScenarioError> {
        self.tasks.get(name).copied().ok_or_else(|| {
            self.malformed(
                line,
                format!("unknown task `{name}`; declare it with `task {name}`"),
            )
        })
    }

    fn name_of(&self, id: BpId) -> String {
        for (name, ids) in &self.bps {
            if ids.contains(&id) {
                return name.clone();
            }
        }
        for (name, task) in &self.tasks {
            for (n, b) in self.machine.debugger_bps(*task) {
                if b == id {
                    return format!("{name}.dr{n}");
                }
            }
        }
        id.to_string()
    }

    fn run(mut self, lines: &[Line], mut report: Report) -> Result<Report, ScenarioError> {
        for line in lines {
            let actual = self.step(line)?;
            check(&mut report, &self.file, line, actual);
        }
        Ok(report)
    }

    fn each(
        &mut self,
        id: &str,
        f: impl Fn(&mut Machine<A>, BpId) -> Result<(), BpError>,
    ) -> String {
        let Some(ids) = self.resolve(id) else {
            return "ENOENT".into();
        };
        outcome(ids.iter().try_for_each(|b| f(&mut self.machine, *b)))
    }

    /// The breakpoints a name stands for: an `open`/`wide` ID, or `TASK.drN` for ptrace's.
    fn resolve(&self, name: &str) -> Option<Vec<BpId>> {
        if let Some(ids) = self.bps.get(name) {
            return Some(ids.clone());
        }
        let (task, reg) = name.split_once(".dr")?;
        let n: u32 = reg.parse().ok()?;
        let task = *self.tasks.get(task)?;
        let found = self
            .machine
            .debugger_bps(task)
            .into_iter()
            .find(|(r, _)| *r == n)?;
        Some(vec![found.1])
    }

    fn step(&mut self, line: &Line) -> Result<String, ScenarioError> {
        Ok(match &line.command {
            Command::Arch(_) | Command::Slots { .. } | Command::Cpus(_) => unreachable!(),
            Command::Task(name) => {
                if self.tasks.contains_key(name) {
                    return Err(self.malformed(line, format!("task `{name}` declared twice")));
                }
                let id = TaskId(self.tasks.len() as u64 + 1);
                self.tasks.insert(name.clone(), id);
                self.machine.add_task(id);
                "ok".into()
            }
            Command::Open {
                id,
                task,
                cpu,
                disabled,
                watch,
            } => {
                if self.bps.contains_key(id) {
                    return Err(self.malformed(line, format!("breakpoint `{id}` is already open")));
                }
                let target = match task {
                    Some(t) => Target::Task {
                        task: self.task(line, t)?,
                        cpu: *cpu,
                    },
                    None => Target::Cpu(cpu.expect("parser requires task or cpu")),
                };
                let r = self
                    .machine
                    .manager_mut()
                    .create(attr(watch, *disabled), target, USER);
                if let Ok(b) = r {
                    self.bps.insert(id.clone(), vec![b]);
                }
                outcome(r)
            }
            Command::Wide {
                id,
                disabled,
                watch,
            } => {
                if self.bps.contains_key(id) {
                    return Err(self.malformed(line, format!("breakpoint `{id}` is already open")));
                }
                let r = self
                    .machine
                    .manager_mut()
                    .create_wide(attr(watch, *disabled), USER);
                let out = outcome(r.as_ref().map(|_| ()).map_err(|e| *e));
                if let Ok(ids) = r {
                    self.bps.insert(id.clone(), ids);
                }
                out
            }
            Command::Close(id) => {
                let out = self.each(id, |m, b| m.manager_mut().close(b));
                self.bps.remove(id);
                out
            }
            Command::Modify {
                id,
                disabled,
                watch,
            } => {
                let Some(ids) = self.resolve(id) else {
                    return Ok("ENOENT".into());
                };
                // All or nothing over a wide breakpoint's parts: on a failure the parts
                // already changed get their old settings back.
                let mut done = Vec::new();
                let mut result = Ok(());
                for b in ids {
                    let old = match self.machine.manager().info(b) {
                        Ok(info) => info.attr,
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    };
                    let mut new = attr(watch, disabled.unwrap_or(old.disabled));
                    new.exclude_kernel = old.exclude_kernel;
                    match self.machine.manager_mut().modify(b, new, true) {
                        Ok(()) => done.push((b, old)),
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
                if result.is_err() {
                    for (b, old) in done {
                        let back = self.machine.manager_mut().modify(b, old, true);
                        debug_assert!(back.is_ok(), "restoring a wide part: {back:?}");
                    }
                }
                outcome(result)
            }
            Command::Enable(id) => self.each(id, |m, b| m.manager_mut().enable(b)),
            Command::Disable(id) => self.each(id, |m, b| m.manager_mut().disable(b)),
            Command::Offline(cpu) => sim_outcome(self.machine.offline(*cpu)),
            Command::Online(cpu) => sim_outcome(self.machine.online(*cpu)),
            Command::Suspend => {
                self.machine.suspend();
                "ok".into()
            }
            Command::Resume => {
                self.machine.resume();
                "ok".into()
            }
            Command::Run { task, cpu } => {
                let t = self.task(line, task)?;
                sim_outcome(self.machine.run(t, *cpu))
            }
            Command::Idle(cpu) => sim_outcome(self.machine.idle(*cpu)),
            Command::Access { cpu, watch } => {
                let region = Region::new(watch.addr, watch.len_bytes.unwrap_or(1));
                self.hits.clear();
                let mut hits = std::mem::take(&mut self.hits);
                let r = self.machine.access(*cpu, watch.access, region, &mut hits);
                let out = match r {
                    Err(e) => e.class().errno_name().to_string(),
                    Ok(_) if hits.is_empty() => "nohit".into(),
                    Ok(_) => {
                        let names: Vec<String> = hits.iter().map(|b| self.name_of(*b)).collect();
                        format!("hit {}", names.join(","))
                    }
                };
                self.hits = hits;
                out
            }
            Command::Count(id) => match self.resolve(id) {
                None => "ENOENT".into(),
                Some(ids) => {
                    let mut total = 0;
                    for b in ids {
                        total += self.machine.manager().hits(b).unwrap_or(0);
                    }
                    total.to_string()
                }
            },
            Command::Regs(cpu) => match self.machine.manager().regs(*cpu) {
                Err(e) => e.class().errno_name().into(),
                Ok(regs) => {
                    let mut s = String::new();
                    self.machine
                        .manager()
                        .arch()
                        .fmt_regs(regs, &mut s)
                        .expect("writing to a String");
                    s
                }
            },
            Command::Poke { task, n, value } => {
                let t = self.task(line, task)?;
                match self.machine.debugger_poke(t, *n, *value) {
                    Ok(()) => "ok".into(),
                    Err(c) => c.errno_name().into(),
                }
            }
            Command::Peek { task, n } => {
                let t = self.task(line, task)?;
                match self.machine.debugger_peek(t, *n) {
                    Ok(v) => format!("{v:#x}"),
                    Err(c) => c.errno_name().into(),
                }
            }
        })
    }
}

fn sim_outcome(r: Result<(), crate::machine::SimError>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) => e.class().errno_name().into(),
    }
}
