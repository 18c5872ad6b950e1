//! Parsing the scenario language into commands (one per line).

use hwbp_core::access::Access;
use hwbp_core::spec::parse_u64;

/// What a breakpoint watches: `ACCESS ADDR[/LEN]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watch {
    /// `r`, `w`, `rw` or `x`.
    pub access: Access,
    /// Start address.
    pub addr: u64,
    /// Length in bytes; `None` = the default (perf's: 4 for data, `sizeof(long)` = 8 for `x`).
    pub len_bytes: Option<u64>,
}

/// One scenario command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `arch NAME`.
    Arch(String),
    /// `slots data=N [inst=M]`.
    Slots {
        /// Data slots.
        data: u32,
        /// Instruction slots.
        inst: Option<u32>,
    },
    /// `cpus N`.
    Cpus(u32),
    /// `task NAME`.
    Task(String),
    /// `open ID [task=NAME] [cpu=N] [disabled] WATCH`.
    Open {
        /// Breakpoint name.
        id: String,
        /// Task it is bound to.
        task: Option<String>,
        /// CPU it is bound to.
        cpu: Option<u32>,
        /// Created disabled.
        disabled: bool,
        /// What it watches.
        watch: Watch,
    },
    /// `wide ID [disabled] WATCH`.
    Wide {
        /// Breakpoint name.
        id: String,
        /// Created disabled.
        disabled: bool,
        /// What it watches.
        watch: Watch,
    },
    /// `close ID`.
    Close(String),
    /// `modify ID [disabled|enabled] WATCH`.
    Modify {
        /// Breakpoint name.
        id: String,
        /// `Some(true)` disabled, `Some(false)` enabled, `None` unchanged.
        disabled: Option<bool>,
        /// New settings.
        watch: Watch,
    },
    /// `enable ID`.
    Enable(String),
    /// `disable ID`.
    Disable(String),
    /// `offline CPU`.
    Offline(u32),
    /// `online CPU`.
    Online(u32),
    /// `suspend`.
    Suspend,
    /// `resume`.
    Resume,
    /// `run NAME on CPU`.
    Run {
        /// Task name.
        task: String,
        /// CPU.
        cpu: u32,
    },
    /// `idle CPU`.
    Idle(u32),
    /// `access CPU ACCESS ADDR[/LEN]` (length default 1).
    Access {
        /// CPU.
        cpu: u32,
        /// The access.
        watch: Watch,
    },
    /// `count ID`.
    Count(String),
    /// `regs CPU`.
    Regs(u32),
    /// `ptrace NAME poke drN VALUE`.
    Poke {
        /// Task name.
        task: String,
        /// Register number.
        n: u32,
        /// Value.
        value: u64,
    },
    /// `ptrace NAME peek drN`.
    Peek {
        /// Task name.
        task: String,
        /// Register number.
        n: u32,
    },
}

/// One line: the command, its source text and its optional expectation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// 1-based line number.
    pub number: usize,
    /// The command text without comment or expectation.
    pub text: String,
    /// The command.
    pub command: Command,
    /// The text after `=>`, if any.
    pub expected: Option<String>,
}

fn number(tok: &str, what: &str) -> Result<u64, String> {
    parse_u64(tok)
        .ok_or_else(|| format!("{what} must be a number (decimal or 0x-hex), got `{tok}`"))
}

fn small(tok: &str, what: &str) -> Result<u32, String> {
    u32::try_from(number(tok, what)?).map_err(|_| format!("{what} `{tok}` is too large"))
}

fn watch(toks: &[&str]) -> Result<Watch, String> {
    let [access, target] = toks else {
        return Err("expected ACCESS ADDR[/LEN], e.g. `w 0x1000/4`".into());
    };
    let access = Access::parse(access)
        .ok_or_else(|| format!("ACCESS must be r, w, rw or x, got `{access}`"))?;
    let (addr, len) = match target.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (*target, None),
    };
    let addr = number(addr, "ADDR")?;
    let len_bytes = match len {
        Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => {
            Some(l.parse().map_err(|_| format!("LEN `{l}` is too large"))?)
        }
        Some(l) => return Err(format!("LEN must be a decimal number of bytes, got `{l}`")),
        None => None,
    };
    Ok(Watch {
        access,
        addr,
        len_bytes,
    })
}

fn dr(tok: &str) -> Result<u32, String> {
    tok.strip_prefix("dr")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("expected a debug register drN, got `{tok}`"))
}

fn name(tok: Option<&&str>, what: &str) -> Result<String, String> {
    tok.map(|s| s.to_string())
        .ok_or_else(|| format!("missing {what}"))
}

fn parse_command(toks: &[&str]) -> Result<Command, String> {
    let (&verb, rest) = toks.split_first().ok_or("empty command")?;
    let exact = |n: usize| -> Result<(), String> {
        if rest.len() == n {
            Ok(())
        } else {
            Err(format!(
                "`{verb}` takes {n} argument(s), got {}",
                rest.len()
            ))
        }
    };
    Ok(match verb {
        "arch" => {
            exact(1)?;
            Command::Arch(rest[0].to_string())
        }
        "slots" => {
            let (mut data, mut inst) = (None, None);
            for t in rest {
                if let Some(v) = t.strip_prefix("data=") {
                    data = Some(small(v, "data")?);
                } else if let Some(v) = t.strip_prefix("inst=") {
                    inst = Some(small(v, "inst")?);
                } else {
                    return Err(format!("slots takes data=N [inst=M], got `{t}`"));
                }
            }
            Command::Slots {
                data: data.ok_or("slots needs data=N")?,
                inst,
            }
        }
        "cpus" => {
            exact(1)?;
            let n = small(rest[0], "cpus")?;
            if n == 0 {
                return Err("a machine needs at least one CPU".into());
            }
            Command::Cpus(n)
        }
        "task" => {
            exact(1)?;
            Command::Task(rest[0].to_string())
        }
        "open" => {
            let id = name(rest.first(), "ID")?;
            let (mut task, mut cpu, mut disabled) = (None, None, false);
            let mut i = 1;
            while i < rest.len() {
                let t = rest[i];
                if let Some(v) = t.strip_prefix("task=") {
                    task = Some(v.to_string());
                } else if let Some(v) = t.strip_prefix("cpu=") {
                    cpu = Some(small(v, "cpu")?);
                } else if t == "disabled" {
                    disabled = true;
                } else {
                    break;
                }
                i += 1;
            }
            if task.is_none() && cpu.is_none() {
                return Err(
                    "open needs task=NAME or cpu=N (perf refuses pid -1 with cpu -1)".into(),
                );
            }
            Command::Open {
                id,
                task,
                cpu,
                disabled,
                watch: watch(&rest[i..])?,
            }
        }
        "wide" => {
            let id = name(rest.first(), "ID")?;
            let disabled = rest.get(1) == Some(&"disabled");
            let from = if disabled { 2 } else { 1 };
            Command::Wide {
                id,
                disabled,
                watch: watch(rest.get(from..).unwrap_or(&[]))?,
            }
        }
        "modify" => {
            let id = name(rest.first(), "ID")?;
            let disabled = match rest.get(1) {
                Some(&"disabled") => Some(true),
                Some(&"enabled") => Some(false),
                _ => None,
            };
            let from = if disabled.is_some() { 2 } else { 1 };
            Command::Modify {
                id,
                disabled,
                watch: watch(rest.get(from..).unwrap_or(&[]))?,
            }
        }
        "close" | "enable" | "disable" | "count" => {
            exact(1)?;
            let id = rest[0].to_string();
            match verb {
                "close" => Command::Close(id),
                "enable" => Command::Enable(id),
                "disable" => Command::Disable(id),
                _ => Command::Count(id),
            }
        }
        "offline" | "online" | "idle" | "regs" => {
            exact(1)?;
            let cpu = small(rest[0], "CPU")?;
            match verb {
                "offline" => Command::Offline(cpu),
                "online" => Command::Online(cpu),
                "idle" => Command::Idle(cpu),
                _ => Command::Regs(cpu),
            }
        }
        "suspend" => {
            exact(0)?;
            Command::Suspend
        }
        "resume" => {
            exact(0)?;
            Command::Resume
        }
        "run" => {
            let [task, on, cpu] = rest else {
                return Err("expected `run NAME on CPU`".into());
            };
            if *on != "on" {
                return Err("expected `run NAME on CPU`".into());
            }
            Command::Run {
                task: task.to_string(),
                cpu: small(cpu, "CPU")?,
            }
        }
        "access" => {
            let cpu = small(rest.first().ok_or("missing CPU")?, "CPU")?;
            Command::Access {
                cpu,
                watch: watch(&rest[1..])?,
            }
        }
        "ptrace" => match rest {
            [task, "poke", reg, value] => Command::Poke {
                task: task.to_string(),
                n: dr(reg)?,
                value: number(value, "VALUE")?,
            },
            [task, "peek", reg] => Command::Peek {
                task: task.to_string(),
                n: dr(reg)?,
            },
            _ => {
                return Err(
                    "expected `ptrace NAME poke drN VALUE` or `ptrace NAME peek drN`".into(),
                )
            }
        },
        other => return Err(format!("unknown command `{other}`")),
    })
}

/// Parses a whole file; `Err((line, message))` for the first malformed line.
pub fn parse(text: &str) -> Result<Vec<Line>, (usize, String)> {
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let number = i + 1;
        let code = raw.split('#').next().unwrap_or("");
        let (cmd, expected) = match code.split_once("=>") {
            Some((c, e)) => {
                let e = e.trim();
                if e.is_empty() {
                    return Err((number, "`=>` without an expected value".into()));
                }
                (c.trim(), Some(e.to_string()))
            }
            None => (code.trim(), None),
        };
        if cmd.is_empty() {
            if expected.is_some() {
                return Err((number, "an expectation without a command".into()));
            }
            continue;
        }
        let toks: Vec<&str> = cmd.split_whitespace().collect();
        let command = parse_command(&toks).map_err(|m| (number, m))?;
        lines.push(Line {
            number,
            text: toks.join(" "),
            command,
            expected,
        });
    }
    Ok(lines)
}
