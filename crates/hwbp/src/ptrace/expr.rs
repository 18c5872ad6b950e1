//! Conditions on a hit: `--if 'EXPR'` over the typed `new` and `old` values.
//!
//! Grammar (C precedence, lowest first):
//! `||` · `&&` · `|` · `^` · `&` · `== !=` · `< <= > >=` · `<< >>` · `+ -` · `* / %` ·
//! unary `! - ~` · primary: `new`, `old`, `true`, `false`, integer literals (decimal, `0x`,
//! `0b`), float literals (`1.5`, `2e3`), `( EXPR )`.
//!
//! Integers compute exactly in `i128` (every width and sign of `new`/`old` fits; overflow is
//! an error, not a wrap). A float operand makes the operation floating point. Comparisons and
//! logic yield booleans; booleans count as 0/1 in arithmetic; an expression is true when its
//! value is non-zero.
//!
//! Not for: symbol lookups or memory reads: the only inputs are `new` and `old`.

use std::fmt;

use super::value::Value;

/// A binary operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// `||`
    Or,
    /// `&&`
    And,
    /// `|`
    BitOr,
    /// `^`
    BitXor,
    /// `&`
    BitAnd,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<<`
    Shl,
    /// `>>`
    Shr,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
}

/// A unary operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    /// `!`
    Not,
    /// `-`
    Neg,
    /// `~`
    BitNot,
}

/// A parsed condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A literal.
    Lit(Value),
    /// The value after the access.
    New,
    /// The value before the access (the shadow copy).
    Old,
    /// `op e`.
    Unary(UnOp, Box<Expr>),
    /// `a op b`.
    Binary(BinOp, Box<Expr>, Box<Expr>),
}

/// Why a condition does not parse: where, and what the parser expected there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset in the expression (0-based).
    pub pos: usize,
    /// What would have been accepted.
    pub expected: &'static str,
    /// The character found instead (`None` at the end of the input).
    pub found: Option<char>,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "condition: at column {}: expected {}, found ",
            self.pos + 1,
            self.expected
        )?;
        match self.found {
            Some(c) => write!(f, "'{c}'")?,
            None => f.write_str("end of input")?,
        }
        f.write_str(" (operands are new, old and literals; e.g. 'new != old && new < 0')")
    }
}

impl std::error::Error for ParseError {}

/// Why a condition could not be evaluated for one hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalError {
    /// Integer `/` or `%` by zero.
    DivisionByZero,
    /// An integer result outside `i128`, or a shift by 128 or more.
    Overflow,
    /// `& | ^ ~ << >> %` applied to a floating-point value.
    BitOpOnFloat,
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EvalError::DivisionByZero => "condition divides an integer by zero (guard it: 'old != 0 && new / old > 2')",
            EvalError::Overflow => "condition overflows 128-bit integer arithmetic (use a float literal such as 1.0 to compute in floating point)",
            EvalError::BitOpOnFloat => "condition applies a bit or remainder operator to a floating-point value (compare it instead)",
        })
    }
}

impl std::error::Error for EvalError {}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek_char(&self) -> Option<char> {
        std::str::from_utf8(&self.s[self.pos..])
            .ok()
            .and_then(|r| r.chars().next())
    }

    fn err(&self, expected: &'static str) -> ParseError {
        ParseError {
            pos: self.pos,
            expected,
            found: self.peek_char(),
        }
    }

    /// Consumes `op` if it is next and not the prefix of a longer operator in `not_before`.
    fn eat(&mut self, op: &str, not_followed_by: &[u8]) -> bool {
        self.skip_ws();
        let b = op.as_bytes();
        if self.s[self.pos..].starts_with(b) {
            let next = self.s.get(self.pos + b.len());
            if next.is_some_and(|c| not_followed_by.contains(c)) {
                return false;
            }
            self.pos += b.len();
            return true;
        }
        false
    }

    fn binary(&mut self, level: usize) -> Result<Expr, ParseError> {
        // (operator text, must not be followed by, op) per precedence level, lowest first.
        const LEVELS: [&[(&str, &[u8], BinOp)]; 10] = [
            &[("||", b"", BinOp::Or)],
            &[("&&", b"", BinOp::And)],
            &[("|", b"|", BinOp::BitOr)],
            &[("^", b"", BinOp::BitXor)],
            &[("&", b"&", BinOp::BitAnd)],
            &[("==", b"", BinOp::Eq), ("!=", b"", BinOp::Ne)],
            &[
                ("<=", b"", BinOp::Le),
                (">=", b"", BinOp::Ge),
                ("<", b"<", BinOp::Lt),
                (">", b">", BinOp::Gt),
            ],
            &[("<<", b"", BinOp::Shl), (">>", b"", BinOp::Shr)],
            &[("+", b"", BinOp::Add), ("-", b"", BinOp::Sub)],
            &[
                ("*", b"", BinOp::Mul),
                ("/", b"", BinOp::Div),
                ("%", b"", BinOp::Rem),
            ],
        ];
        if level == LEVELS.len() {
            return self.unary();
        }
        let mut lhs = self.binary(level + 1)?;
        'outer: loop {
            for &(text, nf, op) in LEVELS[level] {
                if self.eat(text, nf) {
                    let rhs = self.binary(level + 1)?;
                    lhs = Expr::Binary(op, Box::new(lhs), Box::new(rhs));
                    continue 'outer;
                }
            }
            return Ok(lhs);
        }
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        for (text, nf, op) in [
            ("!", b"=" as &[u8], UnOp::Not),
            ("-", b"", UnOp::Neg),
            ("~", b"", UnOp::BitNot),
        ] {
            if self.eat(text, nf) {
                return Ok(Expr::Unary(op, Box::new(self.unary()?)));
            }
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        self.skip_ws();
        const WHAT: &str = "a value (new, old, a number, true, false or '(')";
        let Some(&c) = self.s.get(self.pos) else {
            return Err(self.err(WHAT));
        };
        if c == b'(' {
            self.pos += 1;
            let e = self.binary(0)?;
            if !self.eat(")", b"") {
                return Err(self.err("')'"));
            }
            return Ok(e);
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = self.pos;
            while self.pos < self.s.len()
                && (self.s[self.pos].is_ascii_alphanumeric() || self.s[self.pos] == b'_')
            {
                self.pos += 1;
            }
            return match &self.s[start..self.pos] {
                b"new" => Ok(Expr::New),
                b"old" => Ok(Expr::Old),
                b"true" => Ok(Expr::Lit(Value::Bool(true))),
                b"false" => Ok(Expr::Lit(Value::Bool(false))),
                _ => {
                    self.pos = start;
                    Err(self.err(WHAT))
                }
            };
        }
        if c.is_ascii_digit() || c == b'.' {
            return self.number();
        }
        Err(self.err(WHAT))
    }

    fn number(&mut self) -> Result<Expr, ParseError> {
        let start = self.pos;
        let s = self.s;
        let radix = if s[start..].starts_with(b"0x") || s[start..].starts_with(b"0X") {
            16
        } else if s[start..].starts_with(b"0b") || s[start..].starts_with(b"0B") {
            2
        } else {
            10
        };
        if radix != 10 {
            self.pos += 2;
            let digits = self.pos;
            while self.pos < s.len() && (s[self.pos].is_ascii_hexdigit() || s[self.pos] == b'_') {
                self.pos += 1;
            }
            let text: String = std::str::from_utf8(&s[digits..self.pos])
                .unwrap_or("")
                .chars()
                .filter(|&c| c != '_')
                .collect();
            return match i128::from_str_radix(&text, radix) {
                Ok(v) => Ok(Expr::Lit(Value::Int(v))),
                Err(_) => {
                    self.pos = digits;
                    Err(self.err(if radix == 16 {
                        "hex digits"
                    } else {
                        "binary digits"
                    }))
                }
            };
        }
        let mut is_float = false;
        while self.pos < s.len() {
            let c = s[self.pos];
            if c.is_ascii_digit() || c == b'_' {
                self.pos += 1;
            } else if c == b'.' {
                is_float = true;
                self.pos += 1;
            } else if (c == b'e' || c == b'E') && self.pos > start {
                is_float = true;
                self.pos += 1;
                if self.pos < s.len() && (s[self.pos] == b'+' || s[self.pos] == b'-') {
                    self.pos += 1;
                }
            } else {
                break;
            }
        }
        let text: String = std::str::from_utf8(&s[start..self.pos])
            .unwrap_or("")
            .chars()
            .filter(|&c| c != '_')
            .collect();
        let lit = if is_float {
            text.parse::<f64>().ok().map(Value::Float)
        } else {
            text.parse::<i128>().ok().map(Value::Int)
        };
        match lit {
            Some(v) => Ok(Expr::Lit(v)),
            None => {
                self.pos = start;
                Err(self.err("a number"))
            }
        }
    }
}

impl Expr {
    /// Parses a condition such as `new < 0 || new == old + 1`.
    pub fn parse(text: &str) -> Result<Expr, ParseError> {
        let mut p = Parser {
            s: text.as_bytes(),
            pos: 0,
        };
        let e = p.binary(0)?;
        p.skip_ws();
        if p.pos != p.s.len() {
            return Err(p.err("an operator or the end of the condition"));
        }
        Ok(e)
    }

    /// Whether the condition holds for these values.
    pub fn holds(&self, new: Value, old: Value) -> Result<bool, EvalError> {
        Ok(truthy(self.eval(new, old)?))
    }

    /// Evaluates to a value.
    pub fn eval(&self, new: Value, old: Value) -> Result<Value, EvalError> {
        Ok(match self {
            Expr::Lit(v) => *v,
            Expr::New => new,
            Expr::Old => old,
            Expr::Unary(op, e) => {
                let v = e.eval(new, old)?;
                match op {
                    UnOp::Not => Value::Bool(!truthy(v)),
                    UnOp::Neg => match num(v) {
                        Num::I(i) => Value::Int(i.checked_neg().ok_or(EvalError::Overflow)?),
                        Num::F(f) => Value::Float(-f),
                    },
                    UnOp::BitNot => match num(v) {
                        Num::I(i) => Value::Int(!i),
                        Num::F(_) => return Err(EvalError::BitOpOnFloat),
                    },
                }
            }
            Expr::Binary(BinOp::And, a, b) => {
                Value::Bool(truthy(a.eval(new, old)?) && truthy(b.eval(new, old)?))
            }
            Expr::Binary(BinOp::Or, a, b) => {
                Value::Bool(truthy(a.eval(new, old)?) || truthy(b.eval(new, old)?))
            }
            Expr::Binary(op, a, b) => binary(*op, num(a.eval(new, old)?), num(b.eval(new, old)?))?,
        })
    }
}

enum Num {
    I(i128),
    F(f64),
}

fn num(v: Value) -> Num {
    match v {
        Value::Int(i) => Num::I(i),
        Value::Float(f) => Num::F(f),
        Value::Bool(b) => Num::I(i128::from(b)),
        Value::Ptr(p) => Num::I(i128::from(p)),
    }
}

fn truthy(v: Value) -> bool {
    match num(v) {
        Num::I(i) => i != 0,
        Num::F(f) => f != 0.0,
    }
}

/// The comparison operators, for integers and floats alike; `None` for any other operator.
fn compare<T: PartialOrd>(op: BinOp, x: T, y: T) -> Option<bool> {
    use BinOp::*;
    Some(match op {
        Eq => x == y,
        Ne => x != y,
        Lt => x < y,
        Le => x <= y,
        Gt => x > y,
        Ge => x >= y,
        _ => return None,
    })
}

fn binary(op: BinOp, a: Num, b: Num) -> Result<Value, EvalError> {
    use BinOp::*;
    match (a, b) {
        (Num::I(x), Num::I(y)) => {
            if let Some(b) = compare(op, x, y) {
                return Ok(Value::Bool(b));
            }
            let o = EvalError::Overflow;
            Ok(match op {
                Add => Value::Int(x.checked_add(y).ok_or(o)?),
                Sub => Value::Int(x.checked_sub(y).ok_or(o)?),
                Mul => Value::Int(x.checked_mul(y).ok_or(o)?),
                Div | Rem if y == 0 => return Err(EvalError::DivisionByZero),
                Div => Value::Int(x.checked_div(y).ok_or(o)?),
                Rem => Value::Int(x.checked_rem(y).ok_or(o)?),
                BitAnd => Value::Int(x & y),
                BitOr => Value::Int(x | y),
                BitXor => Value::Int(x ^ y),
                Shl | Shr => {
                    let s = u32::try_from(y).ok().filter(|&s| s < 128).ok_or(o)?;
                    Value::Int(if op == Shl {
                        x.checked_shl(s).ok_or(o)?
                    } else {
                        x >> s
                    })
                }
                Eq | Ne | Lt | Le | Gt | Ge => unreachable!("comparisons are handled above"),
                And | Or => unreachable!("short-circuit operators are handled by Expr::eval"),
            })
        }
        (a, b) => {
            let f = |n: Num| match n {
                Num::I(i) => i as f64,
                Num::F(f) => f,
            };
            let (x, y) = (f(a), f(b));
            if let Some(b) = compare(op, x, y) {
                return Ok(Value::Bool(b));
            }
            Ok(match op {
                Add => Value::Float(x + y),
                Sub => Value::Float(x - y),
                Mul => Value::Float(x * y),
                Div => Value::Float(x / y),
                Eq | Ne | Lt | Le | Gt | Ge => unreachable!("comparisons are handled above"),
                Rem | BitAnd | BitOr | BitXor | Shl | Shr => return Err(EvalError::BitOpOnFloat),
                And | Or => unreachable!("short-circuit operators are handled by Expr::eval"),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ptrace::value::ValueType;

    fn holds(e: &str, new: Value, old: Value) -> bool {
        Expr::parse(e).unwrap().holds(new, old).unwrap()
    }

    #[test]
    fn issue_examples() {
        let i = |v| Value::Int(v);
        assert!(holds("new < 0", i(-1), i(5)));
        assert!(!holds("new < 0", i(0), i(5)));
        assert!(holds("new != old", i(1), i(2)));
        assert!(!holds("new != old", i(2), i(2)));
        assert!(holds("new == 0 && old > 100", i(0), i(101)));
        assert!(!holds("new == 0 && old > 100", i(0), i(100)));
    }

    #[test]
    fn precedence_and_operators() {
        let z = Value::Int(0);
        let ev = |e: &str| Expr::parse(e).unwrap().eval(z, z).unwrap();
        assert_eq!(ev("1 + 2 * 3"), Value::Int(7));
        assert_eq!(ev("(1 + 2) * 3"), Value::Int(9));
        assert_eq!(ev("7 % 4 - -1"), Value::Int(4));
        assert_eq!(ev("1 << 4 | 1"), Value::Int(17));
        assert_eq!(ev("0xff & ~0x0f ^ 0b1"), Value::Int(0xf1));
        assert_eq!(ev("1 < 2 == true"), Value::Bool(true));
        assert_eq!(ev("!0 && !(1 > 2) || false"), Value::Bool(true));
        assert_eq!(ev("1.5 * 2"), Value::Float(3.0));
        assert_eq!(ev("7 / 2"), Value::Int(3));
        assert_eq!(ev("7 / 2.0"), Value::Float(3.5));
        assert_eq!(ev("2e3 >= 2000"), Value::Bool(true));
        assert_eq!(ev("1_000 == 1000"), Value::Bool(true));
    }

    #[test]
    fn typed_values_compare_exactly() {
        // u64::MAX read as unsigned is not -1; read as i64 it is.
        let raw = u64::MAX.to_le_bytes();
        let u = ValueType::Unsigned { len_bytes: 8 }.decode(&raw);
        let s = ValueType::Signed { len_bytes: 8 }.decode(&raw);
        assert!(!holds("new < 0", u, u));
        assert!(holds("new < 0", s, s));
        assert!(holds("new == 0xffffffffffffffff", u, u));
        let f = ValueType::F32.decode(&(-0.5f32).to_le_bytes());
        assert!(holds("new < 0 && new > -1", f, f));
        assert!(holds("new", Value::Bool(true), Value::Bool(false)));
        assert!(holds("new != old", Value::Ptr(0x10), Value::Ptr(0)));
    }

    #[test]
    fn evaluation_errors() {
        let i = Value::Int(3);
        let e = |s: &str| Expr::parse(s).unwrap().eval(i, Value::Int(0));
        assert_eq!(e("new / old"), Err(EvalError::DivisionByZero));
        assert_eq!(e("new % old"), Err(EvalError::DivisionByZero));
        assert_eq!(e("1.5 & 1"), Err(EvalError::BitOpOnFloat));
        assert_eq!(e("1 << 200"), Err(EvalError::Overflow));
        assert_eq!(
            e("170141183460469231731687303715884105727 + 1"),
            Err(EvalError::Overflow)
        );
        // Short-circuit: the division is never evaluated.
        assert_eq!(e("old != 0 && new / old > 2"), Ok(Value::Bool(false)));
    }

    #[test]
    fn parse_errors_name_position_and_expectation() {
        let err = |s: &str| Expr::parse(s).unwrap_err();
        assert_eq!(
            err("new <"),
            ParseError {
                pos: 5,
                expected: "a value (new, old, a number, true, false or '(')",
                found: None
            }
        );
        assert_eq!(
            err("(new < 0"),
            ParseError {
                pos: 8,
                expected: "')'",
                found: None
            }
        );
        assert_eq!(
            err("new = 0"),
            ParseError {
                pos: 4,
                expected: "an operator or the end of the condition",
                found: Some('=')
            }
        );
        assert_eq!(err("value > 0").pos, 0);
        assert_eq!(err("0xz").expected, "hex digits");
        assert_eq!(
            err("new > 0 )").to_string(),
            "condition: at column 9: expected an operator or the end of the condition, found ')' \
             (operands are new, old and literals; e.g. 'new != old && new < 0')"
        );
    }
}
