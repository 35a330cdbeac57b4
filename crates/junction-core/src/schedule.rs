//! Schedules: when an application runs by itself. Three rule shapes come
//! from the specs (spec 004 `frequency` and `crontab`, spec 000 `interval`)
//! and plain `cron` is accepted beside them because people paste crontab
//! lines.
//!
//! Everything here is civil-time arithmetic in the schedule's own time zone,
//! so "every day at 02:30 Europe/Berlin" keeps meaning 02:30 on the wall
//! clock across daylight saving changes. Where the wall clock skips or
//! repeats a time, jiff's "compatible" choice decides: a time in a gap moves
//! forward by the gap, a time in a fold takes its earlier instant. That keeps
//! exactly one fire per local day for daily jobs.
//!
//! Cron is implemented here rather than taken from a crate: the jiff-based
//! cron crates number weekdays 1-7 from Sunday and always AND the two day
//! fields, which reads standard crontab lines wrongly.

use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, DateTime};
use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Span, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::document::{kind, unknown_keys};
use crate::validation::{Invalid, Violations};

/// Keys Junction adds when it shows a schedule. They are ignored on input so
/// a schedule read back can be posted again.
pub const READ_BACK_KEYS: [&str; 9] = [
    "next_fire_at",
    "last_fire_at",
    "last_run_id",
    "created_at",
    "updated_at",
    "description",
    "last_error",
    "next_run",
    "anchor_at",
];

/// The accepted `schedule.schedule_type` values.
pub const SCHEDULE_TYPES: [&str; 4] = ["frequency", "crontab", "interval", "cron"];

const ENTRY_KEYS: [&str; 7] = ["id", "application_id", "entry_id", "params", "enabled", "timezone", "schedule"];
const SCHEDULE_KEYS: [&str; 2] = ["schedule_type", "schedule_info"];
const CRONTAB_KEYS: [&str; 5] = ["minute", "hour", "day_of_month", "month_of_year", "day_of_week"];
const INFO: &str = "schedule.schedule_info";

/// The largest `repeat_every` of an interval; beyond it the numbers stop
/// meaning anything to people and start risking overflow.
pub const MAX_REPEAT_EVERY: i64 = 10_000;

/// The largest `run_every`: 100 years of 365 days, in seconds. Beyond it
/// a schedule would never fire in any calendar Junction can count in.
pub const MAX_RUN_EVERY: i64 = 100 * 365 * 86_400;

/// How far ahead a cron search looks. 28 years is the Gregorian calendar's
/// weekday cycle within a century, so a day pattern that matches nothing in
/// that window (such as 30 February) matches nothing ever.
const CRON_SEARCH_DAYS: i64 = 28 * 366;

/// The fixed instant a new schedule is probed from to refuse rules that
/// can never fire. Fixed so that validation does not depend on the clock.
const PROBE: Timestamp = Timestamp::constant(946_684_800, 0); // 2000-01-01T00:00:00Z

/// The unit of an `interval` schedule (spec 000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Frequency {
    Minute,
    Hourly,
    Daily,
    Weekly,
    Monthly,
}

impl Frequency {
    pub const ALL: [Frequency; 5] =
        [Frequency::Minute, Frequency::Hourly, Frequency::Daily, Frequency::Weekly, Frequency::Monthly];

    pub fn as_str(self) -> &'static str {
        match self {
            Frequency::Minute => "Minute",
            Frequency::Hourly => "Hourly",
            Frequency::Daily => "Daily",
            Frequency::Weekly => "Weekly",
            Frequency::Monthly => "Monthly",
        }
    }

    /// The unit as a word for descriptions ("every 2 hours").
    fn unit(self) -> &'static str {
        match self {
            Frequency::Minute => "minute",
            Frequency::Hourly => "hour",
            Frequency::Daily => "day",
            Frequency::Weekly => "week",
            Frequency::Monthly => "month",
        }
    }
}

impl fmt::Display for Frequency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Case-insensitive, because the spec 000 UI sent both "Daily" and "daily".
impl FromStr for Frequency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Frequency::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("must be one of Minute, Hourly, Daily, Weekly, Monthly, not {s:?}"))
    }
}

/// When a schedule fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// spec 004 "frequency": {"run_every": SECONDS}; fires at anchor + k*run_every, k >= 1.
    Every { seconds: i64 },
    /// spec 004 "crontab" and plain "cron": standard 5-field cron in the schedule's time zone.
    Cron(CronExpr),
    /// spec 000 "interval": first fire at start_on (civil, in the schedule's time zone), then every N units.
    Interval { frequency: Frequency, repeat_every: i64, start_on: DateTime },
}

/// A parsed 5-field cron expression, kept as bitsets so matching a day or
/// an hour is one mask test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronExpr {
    source: String,
    minutes: u64,
    hours: u64,
    /// Bit d for day-of-month d (1-31).
    days: u64,
    /// Bit m for month m (1-12).
    months: u64,
    /// Bit w for weekday w, Sunday = 0.
    weekdays: u64,
    /// Whether the day-of-month / day-of-week field starts with `*`: Vixie
    /// cron ORs the two day fields only when both are restricted.
    days_star: bool,
    weekdays_star: bool,
}

struct CronField {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names for values `min..`, matched case-insensitively.
    names: &'static [&'static str],
}

const CRON_FIELDS: [CronField; 5] = [
    CronField { name: "minute", min: 0, max: 59, names: &[] },
    CronField { name: "hour", min: 0, max: 23, names: &[] },
    CronField { name: "day-of-month", min: 1, max: 31, names: &[] },
    CronField {
        name: "month",
        min: 1,
        max: 12,
        names: &["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
    },
    CronField { name: "day-of-week", min: 0, max: 7, names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"] },
];

const CRON_MACROS: [(&str, &str); 7] = [
    ("@hourly", "0 * * * *"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@weekly", "0 0 * * 0"),
    ("@monthly", "0 0 1 * *"),
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
];

impl CronExpr {
    /// `field` names the JSON field for violations.
    pub fn parse(field: &str, expr: &str) -> Result<CronExpr, Invalid> {
        let source = expr.trim();
        let expanded = if source.starts_with('@') {
            match CRON_MACROS.iter().find(|(name, _)| name.eq_ignore_ascii_case(source)) {
                Some((_, fields)) => *fields,
                None => {
                    let msg = format!(
                        "{source:?} is not a known macro (use @hourly, @daily, @midnight, @weekly, @monthly, @yearly \
                         or @annually)"
                    );
                    return Err(Invalid::one(field, "cron", msg));
                }
            }
        } else {
            source
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        let Ok(parts) = <[&str; 5]>::try_from(parts.as_slice()) else {
            let msg = format!("needs 5 fields (minute hour day-of-month month day-of-week), found {}", parts.len());
            return Err(Invalid::one(field, "cron", msg));
        };
        CronExpr::from_parts(source.to_string(), parts, [field; 5], field)
    }

    /// The expression as written (`@daily` stays `@daily`).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Builds from the five fields, reporting each bad one on its own path
    /// (the crontab form has a JSON field per cron field) and a pattern that
    /// matches no day on `whole`.
    fn from_parts(source: String, parts: [&str; 5], paths: [&str; 5], whole: &str) -> Result<CronExpr, Invalid> {
        let mut v = Violations::default();
        let mut masks = [0u64; 5];
        for (i, spec) in CRON_FIELDS.iter().enumerate() {
            match parse_cron_field(spec, parts[i]) {
                Ok(mask) => masks[i] = mask,
                Err(why) => v.push(paths[i], "cron", format!("{} field: {why}", spec.name)),
            }
        }
        v.finish(())?;
        // Day-of-week 7 is Sunday too.
        let mut weekdays = masks[4];
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & !(1 << 7);
        }
        let expr = CronExpr {
            source,
            minutes: masks[0],
            hours: masks[1],
            days: masks[2],
            months: masks[3],
            weekdays,
            days_star: parts[2].starts_with('*'),
            weekdays_star: parts[4].starts_with('*'),
        };
        if expr.next_after(PROBE, &TimeZone::UTC).is_none() {
            let msg = format!("{:?} matches no day of the calendar, so it would never fire", expr.source);
            return Err(Invalid::one(whole, "never_fires", msg));
        }
        Ok(expr)
    }

    /// Vixie cron: a day matches when both day fields match, or either one
    /// when both are restricted.
    fn day_matches(&self, date: Date) -> bool {
        let dom = self.days & (1 << date.day()) != 0;
        let dow = self.weekdays & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        if self.days_star || self.weekdays_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first fire time strictly after `after`, with the fields read as
    /// wall-clock time in `tz`. None when nothing matches within 28 years.
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        // A wall-clock time shortly before `after`'s own can still land after
        // it when a gap pushed it forward, so the scan starts at `after` read
        // with the offset of two days earlier when that is earlier.
        let local = tz.to_datetime(after);
        let earlier_offset = tz.to_offset(after.checked_sub(SignedDuration::from_hours(48)).unwrap_or(after));
        let from = local.min(earlier_offset.to_datetime(after));
        let first_day = from.date();
        let last_day = first_day.checked_add(Span::new().days(CRON_SEARCH_DAYS)).unwrap_or(Date::MAX);

        // A candidate moved forward by a gap may land later than a later
        // candidate; `best` keeps such a hit until no earlier one can follow.
        let mut best: Option<(Timestamp, DateTime)> = None;
        let mut date = first_day;
        while date <= last_day {
            if self.months & (1 << date.month()) == 0 {
                match date.last_of_month().tomorrow() {
                    Ok(next) => date = next,
                    Err(_) => break,
                }
                continue;
            }
            if self.day_matches(date) {
                let mut hours = self.hours;
                if date == first_day {
                    hours &= !((1u64 << from.hour()) - 1);
                }
                for hour in bits(hours) {
                    let mut minutes = self.minutes;
                    if date == first_day && hour == from.hour() {
                        minutes &= !((1u64 << from.minute()) - 1);
                    }
                    for minute in bits(minutes) {
                        let civil = date.at(hour, minute, 0, 0);
                        if let Some((t, limit)) = best {
                            if civil >= limit {
                                return Some(t);
                            }
                        }
                        let Ok(t) = tz.to_ambiguous_timestamp(civil).compatible() else { continue };
                        if t <= after {
                            continue;
                        }
                        let landed = tz.to_datetime(t);
                        if landed == civil {
                            return Some(best.map_or(t, |(b, _)| b.min(t)));
                        }
                        if best.is_none_or(|(b, _)| t < b) {
                            best = Some((t, landed));
                        }
                    }
                }
            }
            match date.tomorrow() {
                Ok(next) => date = next,
                Err(_) => break,
            }
        }
        best.map(|(t, _)| t)
    }
}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// The set bits of `mask`, lowest first.
fn bits(mut mask: u64) -> impl Iterator<Item = i8> {
    std::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let bit = mask.trailing_zeros();
        mask &= mask - 1;
        Some(bit as i8)
    })
}

/// One cron field (`*/15`, `9-17/2`, `MON-FRI`, `1,15`) as a bitset.
fn parse_cron_field(spec: &CronField, text: &str) -> Result<u64, String> {
    if text.is_empty() {
        return Err("is empty".to_string());
    }
    let mut mask = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(format!("{text:?} has an empty item"));
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = match step.parse() {
                    Ok(s) if step.bytes().all(|b| b.is_ascii_digit()) => s,
                    _ => return Err(format!("step {step:?} in {item:?} is not a number")),
                };
                if step == 0 {
                    return Err(format!("step in {item:?} must be at least 1"));
                }
                (range, Some(step))
            }
            None => (item, None),
        };
        let (lo, hi) = if range == "*" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (cron_value(spec, a)?, cron_value(spec, b)?);
            if a > b {
                return Err(format!("range {range:?} runs backwards"));
            }
            (a, b)
        } else {
            let a = cron_value(spec, range)?;
            (a, if step.is_some() { spec.max } else { a })
        };
        for value in (lo..=hi).step_by(step.unwrap_or(1) as usize) {
            mask |= 1 << value;
        }
    }
    Ok(mask)
}

fn cron_value(spec: &CronField, text: &str) -> Result<u32, String> {
    let value = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<u32>().ok()
    } else {
        spec.names.iter().position(|n| n.eq_ignore_ascii_case(text)).map(|i| i as u32 + spec.min)
    };
    match value {
        Some(v) if (spec.min..=spec.max).contains(&v) => Ok(v),
        Some(_) => Err(format!("{text} is out of range {}-{}", spec.min, spec.max)),
        None if text.is_empty() => Err("a range has an empty end".to_string()),
        None => Err(format!("{text:?} is not a number{}", if spec.names.is_empty() { "" } else { " or name" })),
    }
}

/// A validated schedule entry (the body of POST /api/v1/schedule).
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleEntry {
    /// Given to replace an existing schedule.
    pub id: Option<String>,
    pub application_id: String,
    pub entry_id: Option<String>,
    pub params: Map<String, Value>,
    pub enabled: bool,
    /// IANA name as given, default "UTC".
    pub timezone: String,
    pub tz: TimeZone,
    /// "frequency" | "crontab" | "interval" | "cron".
    pub schedule_type: String,
    /// As written, so the schedule reads back the way the user sent it.
    pub schedule_info: Value,
    pub rule: Rule,
}

impl ScheduleEntry {
    /// Validates a posted schedule, reporting every violation at once.
    pub fn parse(body: &Value) -> Result<ScheduleEntry, Invalid> {
        let Value::Object(obj) = body else {
            return Err(Invalid::one("", "type", format!("a schedule must be a JSON object, not {}", kind(body))));
        };
        let mut v = Violations::default();
        let known: Vec<&str> = ENTRY_KEYS.iter().chain(READ_BACK_KEYS.iter()).copied().collect();
        unknown_keys(obj, &known, "", "a schedule", &mut v);
        let id = opt_string(obj, "id", "id", &mut v);
        let application_id = match obj.get("application_id") {
            Some(Value::String(s)) if !s.is_empty() => match crate::name::check_name("application_id", s) {
                Ok(()) => Some(s.clone()),
                Err(e) => {
                    v.add(e);
                    None
                }
            },
            None | Some(Value::Null) => {
                v.push("application_id", "required", "a schedule needs the application it runs");
                None
            }
            Some(Value::String(_)) => {
                v.push("application_id", "required", "must not be empty");
                None
            }
            Some(other) => {
                v.push("application_id", "type", format!("must be a string, not {}", kind(other)));
                None
            }
        };
        let entry_id = opt_string(obj, "entry_id", "entry_id", &mut v);
        if let Some(e) = &entry_id {
            if e.chars().count() > 256 || e.chars().any(char::is_control) {
                v.push("entry_id", "text", "must be at most 256 characters, without control characters");
            }
        }
        let params = match obj.get("params") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => {
                v.push("params", "type", format!("must be an object, not {}", kind(other)));
                Map::new()
            }
        };
        let enabled = match obj.get("enabled") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                v.push("enabled", "type", format!("must be true or false, not {}", kind(other)));
                true
            }
        };
        let timezone = match obj.get("timezone") {
            None | Some(Value::Null) => Some("UTC".to_string()),
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                v.push("timezone", "type", format!("must be a string, not {}", kind(other)));
                None
            }
        };
        let tz = timezone.as_deref().and_then(|name| {
            let tz = time_zone(name);
            if tz.is_none() {
                v.push("timezone", "time_zone", format!("{name:?} is not a known IANA time zone"));
            }
            tz
        });
        // Civil start times are still checked when the zone is bad; UTC
        // stands in so their own errors are reported too.
        let schedule = parse_schedule(obj.get("schedule"), tz.as_ref().unwrap_or(&TimeZone::UTC), &mut v);

        let (Some(application_id), Some(timezone), Some(tz), Some((schedule_type, schedule_info, rule))) =
            (application_id, timezone, tz, schedule)
        else {
            // Every missing piece was reported as a violation.
            v.finish(())?;
            return Err(Invalid::one("", "type", "not a schedule"));
        };
        let entry = ScheduleEntry {
            id,
            application_id,
            entry_id,
            params,
            enabled,
            timezone,
            tz,
            schedule_type,
            schedule_info,
            rule,
        };
        if entry.next_after(PROBE, PROBE).is_none() {
            v.push(entry.never_fires_field(), "never_fires", "this schedule would never fire");
        }
        v.finish(entry)
    }

    fn never_fires_field(&self) -> String {
        match (&self.rule, self.schedule_type.as_str()) {
            (Rule::Every { .. }, _) => format!("{INFO}.run_every"),
            (Rule::Interval { .. }, _) => format!("{INFO}.start_on"),
            (Rule::Cron(_), "cron") => format!("{INFO}.expression"),
            (Rule::Cron(_), _) => INFO.to_string(),
        }
    }

    /// The first fire time strictly after `after`. `anchor` is when counting starts for Rule::Every
    /// (the schedule's creation time); ignored by the other rules. None = never fires again.
    pub fn next_after(&self, after: Timestamp, anchor: Timestamp) -> Option<Timestamp> {
        match &self.rule {
            Rule::Every { seconds } => fixed_step_next(anchor, i128::from(*seconds), after, 1),
            Rule::Cron(expr) => expr.next_after(after, &self.tz),
            Rule::Interval { frequency, repeat_every, start_on } => {
                interval_next(*frequency, *repeat_every, *start_on, &self.tz, after)
            }
        }
    }

    /// The human text of the jobs grid, e.g. "Every 2 hours from 2026-11-23 09:00 UTC".
    pub fn describe(&self) -> String {
        match &self.rule {
            Rule::Every { seconds } => describe_seconds(*seconds),
            Rule::Interval { frequency, repeat_every, start_on } => {
                let format = if start_on.second() == 0 { "%Y-%m-%d %H:%M" } else { "%Y-%m-%d %H:%M:%S" };
                format!(
                    "Every {} from {} {}",
                    count(*repeat_every, frequency.unit()),
                    start_on.strftime(format),
                    self.timezone
                )
            }
            Rule::Cron(expr) => format!("Cron {} ({})", expr.as_str(), self.timezone),
        }
    }

    /// The entry as JSON in the shape it was given (id omitted).
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "application_id": self.application_id,
            "entry_id": self.entry_id,
            "params": self.params,
            "enabled": self.enabled,
            "timezone": self.timezone,
            "schedule": {
                "schedule_type": self.schedule_type,
                "schedule_info": self.schedule_info,
            },
        })
    }
}

/// "UTC" never depends on the host's time zone database. Files of the
/// host's database that are not zones (`localtime`, `posixrules`,
/// `Factory`, the `posix/` and `right/` copies) are refused: a schedule
/// must mean the same on every host.
fn time_zone(name: &str) -> Option<TimeZone> {
    if name == "UTC" {
        return Some(TimeZone::UTC);
    }
    let not_a_zone = ["localtime", "posixrules", "Factory"].contains(&name)
        || name.starts_with("posix/")
        || name.starts_with("right/")
        || name.chars().any(|c| c.is_control() || c == '\\')
        || name.contains("..");
    if not_a_zone {
        return None;
    }
    TimeZone::get(name).ok()
}

fn opt_string(obj: &Map<String, Value>, key: &str, field: &str, v: &mut Violations) -> Option<String> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            v.push(field, "type", format!("must be a string, not {}", kind(other)));
            None
        }
    }
}

/// A required whole number in `min..=max`. `3600.0` is accepted because
/// some clients write every number as a float. Out of range is `too_small`
/// or `too_large`, naming the bound, however far out the number is
/// (`1e300`, `-1e300`, `u64::MAX`).
fn whole_number(obj: &Map<String, Value>, key: &str, min: i64, max: i64, v: &mut Violations) -> Option<i64> {
    let field = format!("{INFO}.{key}");
    let value = match obj.get(key) {
        None | Some(Value::Null) => {
            v.push(field, "required", "is required");
            return None;
        }
        Some(Value::Number(n)) => n,
        Some(other) => {
            v.push(field, "type", format!("must be a whole number, not {}", kind(other)));
            return None;
        }
    };
    // Below or above every i64 when it does not fit one.
    let whole: Option<Result<i64, std::cmp::Ordering>> = if let Some(x) = value.as_i64() {
        Some(Ok(x))
    } else if value.is_u64() {
        Some(Err(std::cmp::Ordering::Greater))
    } else {
        value.as_f64().filter(|f| f.fract() == 0.0).map(|f| {
            if f.abs() < 9.0e15 {
                Ok(f as i64)
            } else if f > 0.0 {
                Err(std::cmp::Ordering::Greater)
            } else {
                Err(std::cmp::Ordering::Less)
            }
        })
    };
    match whole {
        Some(Ok(x)) if (min..=max).contains(&x) => Some(x),
        Some(Ok(x)) if x < min => too_small(field, min, v),
        Some(Err(std::cmp::Ordering::Less)) => too_small(field, min, v),
        Some(_) => {
            v.push(field, "too_large", format!("must be at most {max}"));
            None
        }
        None => {
            v.push(field, "type", format!("must be a whole number, not {value}"));
            None
        }
    }
}

fn too_small(field: String, min: i64, v: &mut Violations) -> Option<i64> {
    v.push(field, "too_small", format!("must be at least {min}"));
    None
}

/// `schedule`: the type and the type's own fields, as (type, info as written, rule).
fn parse_schedule(value: Option<&Value>, tz: &TimeZone, v: &mut Violations) -> Option<(String, Value, Rule)> {
    let obj = match value {
        Some(Value::Object(obj)) => obj,
        None | Some(Value::Null) => {
            v.push("schedule", "required", "a schedule needs {schedule_type, schedule_info}");
            return None;
        }
        Some(other) => {
            v.push("schedule", "type", format!("must be an object, not {}", kind(other)));
            return None;
        }
    };
    unknown_keys(obj, &SCHEDULE_KEYS, "schedule", "a schedule", v);
    let schedule_type = match obj.get("schedule_type") {
        Some(Value::String(s)) if SCHEDULE_TYPES.contains(&s.as_str()) => Some(s.as_str()),
        Some(Value::String(s)) => {
            let msg = format!("must be one of frequency, crontab, interval, cron, not {s:?}");
            v.push("schedule.schedule_type", "one_of", msg);
            None
        }
        None | Some(Value::Null) => {
            v.push("schedule.schedule_type", "required", "is required");
            None
        }
        Some(other) => {
            v.push("schedule.schedule_type", "type", format!("must be a string, not {}", kind(other)));
            None
        }
    };
    let info = match obj.get("schedule_info") {
        Some(Value::Object(info)) => Some(info),
        None | Some(Value::Null) => {
            v.push(INFO, "required", "is required");
            None
        }
        Some(other) => {
            v.push(INFO, "type", format!("must be an object, not {}", kind(other)));
            None
        }
    };
    let (schedule_type, info) = (schedule_type?, info?);
    let rule = match schedule_type {
        "frequency" => parse_frequency(info, v),
        "crontab" => parse_crontab(info, v),
        "cron" => parse_cron(info, v),
        _ => parse_interval(info, tz, v),
    }?;
    Some((schedule_type.to_string(), Value::Object(info.clone()), rule))
}

fn parse_frequency(info: &Map<String, Value>, v: &mut Violations) -> Option<Rule> {
    unknown_keys(info, &["run_every"], INFO, "this kind of schedule", v);
    let seconds = whole_number(info, "run_every", 1, MAX_RUN_EVERY, v)?;
    Some(Rule::Every { seconds })
}

fn parse_crontab(info: &Map<String, Value>, v: &mut Violations) -> Option<Rule> {
    unknown_keys(info, &CRONTAB_KEYS, INFO, "this kind of schedule", v);
    let mut texts: [String; 5] = Default::default();
    let mut typed = true;
    for (i, key) in CRONTAB_KEYS.iter().enumerate() {
        texts[i] = match info.get(*key) {
            None | Some(Value::Null) => "*".to_string(),
            Some(Value::String(s)) => s.trim().to_string(),
            Some(Value::Number(n)) if n.as_u64().is_some() => n.to_string(),
            Some(other) => {
                let msg = format!("must be a cron field string or a non-negative whole number, not {other}");
                v.push(format!("{INFO}.{key}"), "type", msg);
                typed = false;
                // Still parse the other fields so their errors show too.
                "*".to_string()
            }
        };
    }
    let paths = CRONTAB_KEYS.map(|key| format!("{INFO}.{key}"));
    let parts = [0, 1, 2, 3, 4].map(|i| texts[i].as_str());
    let result = CronExpr::from_parts(parts.join(" "), parts, paths.each_ref().map(String::as_str), INFO);
    match result {
        Ok(expr) if typed => Some(Rule::Cron(expr)),
        Ok(_) => None,
        Err(e) => {
            v.extend(e);
            None
        }
    }
}

fn parse_cron(info: &Map<String, Value>, v: &mut Violations) -> Option<Rule> {
    unknown_keys(info, &["expression"], INFO, "this kind of schedule", v);
    let field = format!("{INFO}.expression");
    match info.get("expression") {
        Some(Value::String(s)) => match CronExpr::parse(&field, s) {
            Ok(expr) => Some(Rule::Cron(expr)),
            Err(e) => {
                v.extend(e);
                None
            }
        },
        None | Some(Value::Null) => {
            v.push(field, "required", "is required, e.g. \"*/5 * * * *\"");
            None
        }
        Some(other) => {
            v.push(field, "type", format!("must be a string, not {}", kind(other)));
            None
        }
    }
}

fn parse_interval(info: &Map<String, Value>, tz: &TimeZone, v: &mut Violations) -> Option<Rule> {
    unknown_keys(info, &["frequency", "repeat_every", "start_on"], INFO, "this kind of schedule", v);
    let field = format!("{INFO}.frequency");
    let frequency = match info.get("frequency") {
        Some(Value::String(s)) => match s.parse::<Frequency>() {
            Ok(f) => Some(f),
            Err(msg) => {
                v.push(field, "one_of", msg);
                None
            }
        },
        None | Some(Value::Null) => {
            v.push(field, "required", "is required: Minute, Hourly, Daily, Weekly or Monthly");
            None
        }
        Some(other) => {
            v.push(field, "type", format!("must be a string, not {}", kind(other)));
            None
        }
    };
    let repeat_every = whole_number(info, "repeat_every", 1, MAX_REPEAT_EVERY, v);
    let field = format!("{INFO}.start_on");
    let start_on = match info.get("start_on") {
        Some(Value::String(s)) => {
            let start = parse_start_on(s, tz);
            if start.is_none() {
                let msg = format!("{s:?} is not a date and time such as 2026-11-23T09:00 or 2026-11-23T09:00Z");
                v.push(field, "date_time", msg);
            }
            start
        }
        None | Some(Value::Null) => {
            v.push(field, "required", "is required, e.g. 2026-11-23T09:00");
            None
        }
        Some(other) => {
            v.push(field, "type", format!("must be a string, not {}", kind(other)));
            None
        }
    };
    Some(Rule::Interval { frequency: frequency?, repeat_every: repeat_every?, start_on: start_on? })
}

/// `2026-11-23`, `2026-11-23T09:00`, `2026-11-23 09:00:00`, each optionally
/// followed by `Z` or `+01:00`. Without an offset it is wall-clock time in
/// the schedule's zone; with one it is an instant, read in that zone.
fn parse_start_on(s: &str, tz: &TimeZone) -> Option<DateTime> {
    let (year, rest) = digits(s, 4)?;
    let (month, rest) = digits(rest.strip_prefix('-')?, 2)?;
    let (day, mut rest) = digits(rest.strip_prefix('-')?, 2)?;
    let (mut hour, mut minute, mut second) = (0, 0, 0);
    if let Some(time) = rest.strip_prefix(['T', 't', ' ']) {
        let (h, time) = digits(time, 2)?;
        let (m, time) = digits(time.strip_prefix(':')?, 2)?;
        (hour, minute, rest) = (h, m, time);
        if let Some(time) = rest.strip_prefix(':') {
            (second, rest) = digits(time, 2)?;
        }
    }
    let civil = DateTime::new(year as i16, month as i8, day as i8, hour as i8, minute as i8, second as i8, 0).ok()?;
    let offset = match rest {
        "" => return Some(civil),
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, off) = digits(&rest[1..], 2)?;
            let (m, off) = digits(off.strip_prefix(':')?, 2)?;
            if !off.is_empty() || h > 23 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60) as i32
        }
    };
    let instant = Offset::from_seconds(offset).ok()?.to_timestamp(civil).ok()?;
    Some(tz.to_datetime(instant))
}

/// Exactly `n` ASCII digits at the start of `s`, and the rest.
fn digits(s: &str, n: usize) -> Option<(u32, &str)> {
    let head = s.as_bytes().get(..n)?;
    if !head.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some((s[..n].parse().ok()?, &s[n..]))
}

/// `start + k*step` for the smallest `k >= min_k` that lands strictly after
/// `after`; computed, not iterated, so a schedule from years ago is as cheap
/// as a new one.
fn fixed_step_next(start: Timestamp, step_seconds: i128, after: Timestamp, min_k: i128) -> Option<Timestamp> {
    if step_seconds < 1 {
        return None;
    }
    let step = step_seconds.checked_mul(1_000_000_000)?;
    let start = start.as_nanosecond();
    let elapsed = after.as_nanosecond() - start;
    let k = (elapsed.div_euclid(step) + 1).max(min_k);
    Timestamp::from_nanosecond(start.checked_add(k.checked_mul(step)?)?).ok()
}

fn interval_next(
    frequency: Frequency,
    n: i64,
    start_on: DateTime,
    tz: &TimeZone,
    after: Timestamp,
) -> Option<Timestamp> {
    if n < 1 {
        return None;
    }
    // Minutes and hours are elapsed time: a DST change does not move them.
    let fixed = match frequency {
        Frequency::Minute => Some(60),
        Frequency::Hourly => Some(3600),
        _ => None,
    };
    if let Some(unit) = fixed {
        let start = tz.to_ambiguous_timestamp(start_on).compatible().ok()?;
        return fixed_step_next(start, i128::from(n) * unit, after, 0);
    }
    // Days, weeks and months are wall-clock time. Estimate k from the local
    // date of `after`, start one step early to be safe, and walk forward.
    let local = tz.to_datetime(after).date();
    let start_date = start_on.date();
    let (step, elapsed) = match frequency {
        Frequency::Monthly => {
            let months = (i64::from(local.year()) - i64::from(start_date.year())) * 12 + i64::from(local.month())
                - i64::from(start_date.month());
            (n, months)
        }
        _ => {
            let days = i64::from(start_date.until(local).ok()?.get_days());
            (if frequency == Frequency::Weekly { 7 * n } else { n }, days)
        }
    };
    let mut k = (elapsed.div_euclid(step) - 1).max(0);
    loop {
        // Each fire is computed from `start_on`, never from the previous
        // fire, so a 31st clamped to 28 February is the 31st again in March.
        let span = match frequency {
            Frequency::Monthly => Span::new().try_months(k.checked_mul(step)?).ok()?,
            _ => Span::new().try_days(k.checked_mul(step)?).ok()?,
        };
        let civil = start_on.checked_add(span).ok()?;
        let t = tz.to_ambiguous_timestamp(civil).compatible().ok()?;
        if t > after {
            return Some(t);
        }
        k += 1;
    }
}

fn count(n: i64, unit: &str) -> String {
    if n == 1 {
        unit.to_string()
    } else {
        format!("{n} {unit}s")
    }
}

/// The largest unit that divides the period exactly, so 7200 reads
/// "Every 2 hours" and 5400 reads "Every 90 minutes".
fn describe_seconds(seconds: i64) -> String {
    let (n, unit) = [(86_400, "day"), (3_600, "hour"), (60, "minute")]
        .into_iter()
        .find(|(size, _)| seconds % size == 0)
        .map_or((seconds, "second"), |(size, unit)| (seconds / size, unit));
    format!("Every {}", count(n, unit))
}

/// moment.js `fromNow()` style text for a future (or past) instant: "in a few seconds", "in a minute",
/// "in 5 minutes", "in an hour", "in 3 hours", "in a day", "in 4 days", "in a month", "in 2 months",
/// "in a year", "in 3 years"; past: "a few seconds ago", "5 minutes ago" ...
///
/// The jobs grid of the old UI showed moment's text, so this follows
/// moment's algorithm (each unit rounded on its own, months as 146097/4800
/// days) rather than its documented, approximate, table.
pub fn relative(now: Timestamp, then: Timestamp) -> String {
    let delta = then.as_millisecond() - now.as_millisecond();
    let ms = delta.unsigned_abs() as f64;
    let seconds = (ms / 1_000.0).round();
    let minutes = (ms / 60_000.0).round();
    let hours = (ms / 3_600_000.0).round();
    let days_exact = ms / 86_400_000.0;
    let days = days_exact.round();
    let months_exact = days_exact * 4_800.0 / 146_097.0;
    let months = months_exact.round();
    let years = (months_exact / 12.0).round();
    let text = if seconds < 45.0 {
        "a few seconds".to_string()
    } else if minutes <= 1.0 {
        "a minute".to_string()
    } else if minutes < 45.0 {
        format!("{} minutes", minutes as i64)
    } else if hours <= 1.0 {
        "an hour".to_string()
    } else if hours < 22.0 {
        format!("{} hours", hours as i64)
    } else if days <= 1.0 {
        "a day".to_string()
    } else if days < 26.0 {
        format!("{} days", days as i64)
    } else if months <= 1.0 {
        "a month".to_string()
    } else if months < 11.0 {
        format!("{} months", months as i64)
    } else if years <= 1.0 {
        "a year".to_string()
    } else {
        format!("{} years", years as i64)
    };
    if delta > 0 {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn body(timezone: &str, schedule_type: &str, info: Value) -> Value {
        json!({
            "application_id": "app",
            "timezone": timezone,
            "schedule": {"schedule_type": schedule_type, "schedule_info": info},
        })
    }

    fn entry(body: &Value) -> ScheduleEntry {
        ScheduleEntry::parse(body).unwrap_or_else(|e| panic!("{body}: {e:?}"))
    }

    /// The `(field, rule)` pairs of a refused body, sorted.
    fn refused(body: &Value) -> Vec<(String, String)> {
        let mut got: Vec<_> = match ScheduleEntry::parse(body) {
            Ok(e) => panic!("{body} was accepted: {e:?}"),
            Err(Invalid(v)) => v.into_iter().map(|v| (v.field, v.rule)).collect(),
        };
        got.sort();
        got
    }

    struct Fires {
        name: &'static str,
        tz: &'static str,
        schedule_type: &'static str,
        info: Value,
        /// Asked first; each following fire is asked from the previous one.
        from: &'static str,
        fires: &'static [&'static str],
    }

    const ANCHOR: &str = "2026-11-23T09:00:00Z";

    fn fire_cases() -> Vec<Fires> {
        let f = |name, tz, schedule_type, info, from, fires| Fires { name, tz, schedule_type, info, from, fires };
        let interval = |frequency: &str, repeat_every: i64, start_on: &str| json!({"frequency": frequency, "repeat_every": repeat_every, "start_on": start_on});
        let cron = |expression: &str| json!({ "expression": expression });
        vec![
            // --- interval: minutes and hours are elapsed time ---
            f(
                "minute x1, first fire is start_on",
                "UTC",
                "interval",
                interval("Minute", 1, "2026-11-23T09:00"),
                "2026-11-23T08:00:00Z",
                &["2026-11-23T09:00:00Z", "2026-11-23T09:01:00Z", "2026-11-23T09:02:00Z"],
            ),
            f(
                "minute x15, asked at a fire time",
                "UTC",
                "interval",
                interval("Minute", 15, "2026-11-23T09:00"),
                "2026-11-23T09:00:00Z",
                &["2026-11-23T09:15:00Z", "2026-11-23T09:30:00Z", "2026-11-23T09:45:00Z"],
            ),
            f(
                "minute x15, years after start_on",
                "UTC",
                "interval",
                interval("Minute", 15, "2020-01-01T00:05"),
                "2026-11-23T09:07:59.5Z",
                &["2026-11-23T09:20:00Z", "2026-11-23T09:35:00Z"],
            ),
            f(
                "hourly x1 in Berlin (CET)",
                "Europe/Berlin",
                "interval",
                interval("Hourly", 1, "2026-11-23T09:00"),
                "2026-11-23T00:00:00Z",
                &["2026-11-23T08:00:00Z", "2026-11-23T09:00:00Z", "2026-11-23T10:00:00Z"],
            ),
            f(
                "hourly x2 across midnight",
                "UTC",
                "interval",
                interval("Hourly", 2, "2026-11-23 22:00"),
                "2026-11-23T21:00:00Z",
                &["2026-11-23T22:00:00Z", "2026-11-24T00:00:00Z", "2026-11-24T02:00:00Z"],
            ),
            f(
                "hourly x1 through spring forward stays hourly",
                "Europe/Berlin",
                "interval",
                interval("Hourly", 1, "2026-03-29T00:00"),
                "2026-03-29T00:00:00Z",
                &["2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"],
            ),
            // --- interval: days, weeks, months are wall-clock time ---
            f(
                "daily x1",
                "UTC",
                "interval",
                interval("Daily", 1, "2026-11-23T09:00"),
                "2026-11-25T09:00:00Z",
                &["2026-11-26T09:00:00Z", "2026-11-27T09:00:00Z", "2026-11-28T09:00:00Z"],
            ),
            f(
                "daily x3",
                "UTC",
                "interval",
                interval("Daily", 3, "2026-01-01T06:00"),
                "2026-01-05T00:00:00Z",
                &["2026-01-07T06:00:00Z", "2026-01-10T06:00:00Z", "2026-01-13T06:00:00Z"],
            ),
            f(
                "weekly x1 in New York",
                "America/New_York",
                "interval",
                interval("Weekly", 1, "2026-11-23T09:00"),
                "2026-11-23T14:00:00Z",
                &["2026-11-30T14:00:00Z", "2026-12-07T14:00:00Z", "2026-12-14T14:00:00Z"],
            ),
            f(
                "weekly x2 keeps 09:00 local across fall back",
                "Europe/Berlin",
                "interval",
                interval("Weekly", 2, "2026-10-19T09:00"),
                "2026-10-19T07:00:00Z",
                &["2026-11-02T08:00:00Z", "2026-11-16T08:00:00Z", "2026-11-30T08:00:00Z"],
            ),
            f(
                "monthly x1 from 31 January clamps, then returns to the 31st",
                "UTC",
                "interval",
                interval("Monthly", 1, "2026-01-31T10:00"),
                "2026-01-31T10:00:00Z",
                &["2026-02-28T10:00:00Z", "2026-03-31T10:00:00Z", "2026-04-30T10:00:00Z", "2026-05-31T10:00:00Z"],
            ),
            f(
                "monthly x1 from 31 January in a leap year",
                "UTC",
                "interval",
                interval("Monthly", 1, "2028-01-31T10:00"),
                "2028-01-31T10:00:00Z",
                &["2028-02-29T10:00:00Z", "2028-03-31T10:00:00Z"],
            ),
            f(
                "monthly x12 from a leap day",
                "UTC",
                "interval",
                interval("Monthly", 12, "2028-02-29T12:00"),
                "2028-02-29T12:00:00Z",
                &["2029-02-28T12:00:00Z", "2030-02-28T12:00:00Z", "2031-02-28T12:00:00Z", "2032-02-29T12:00:00Z"],
            ),
            f(
                "monthly x3 from the 30th",
                "UTC",
                "interval",
                interval("monthly", 3, "2026-11-30T08:00"),
                "2026-12-01T00:00:00Z",
                &["2027-02-28T08:00:00Z", "2027-05-30T08:00:00Z", "2027-08-30T08:00:00Z"],
            ),
            // --- DST: one fire per local day ---
            f(
                "daily 02:30 Berlin, spring forward moves to 03:30 CEST",
                "Europe/Berlin",
                "interval",
                interval("Daily", 1, "2026-03-27T02:30"),
                "2026-03-27T00:00:00Z",
                &["2026-03-27T01:30:00Z", "2026-03-28T01:30:00Z", "2026-03-29T01:30:00Z", "2026-03-30T00:30:00Z"],
            ),
            f(
                "daily 02:30 Berlin, fall back fires at the first 02:30 only",
                "Europe/Berlin",
                "interval",
                interval("Daily", 1, "2026-10-24T02:30"),
                "2026-10-24T00:00:00Z",
                &["2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"],
            ),
            f(
                "daily 02:30 New York, spring forward moves to 03:30 EDT",
                "America/New_York",
                "interval",
                interval("Daily", 1, "2026-03-07T02:30"),
                "2026-03-07T00:00:00Z",
                &["2026-03-07T07:30:00Z", "2026-03-08T07:30:00Z", "2026-03-09T06:30:00Z"],
            ),
            f(
                "daily 02:30 New York, fall back (02:30 is not repeated there)",
                "America/New_York",
                "interval",
                interval("Daily", 1, "2026-10-31T02:30"),
                "2026-10-31T00:00:00Z",
                &["2026-10-31T06:30:00Z", "2026-11-01T07:30:00Z", "2026-11-02T07:30:00Z"],
            ),
            f(
                "daily 01:30 New York, fall back fires at the first 01:30 only",
                "America/New_York",
                "interval",
                interval("Daily", 1, "2026-10-31T01:30"),
                "2026-10-31T00:00:00Z",
                &["2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"],
            ),
            f(
                "cron 30 2 Berlin, spring forward",
                "Europe/Berlin",
                "cron",
                cron("30 2 * * *"),
                "2026-03-28T00:00:00Z",
                &["2026-03-28T01:30:00Z", "2026-03-29T01:30:00Z", "2026-03-30T00:30:00Z"],
            ),
            f(
                "cron 30 2 Berlin, asked inside the gap day after 03:00 CEST",
                "Europe/Berlin",
                "cron",
                cron("30 2 * * *"),
                "2026-03-29T01:00:00Z",
                &["2026-03-29T01:30:00Z", "2026-03-30T00:30:00Z"],
            ),
            f(
                "cron 30 2 Berlin, fall back",
                "Europe/Berlin",
                "cron",
                cron("30 2 * * *"),
                "2026-10-24T00:00:00Z",
                &["2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"],
            ),
            f(
                "cron 30 2 Berlin, asked during the repeated hour",
                "Europe/Berlin",
                "cron",
                cron("30 2 * * *"),
                "2026-10-25T01:10:00Z",
                &["2026-10-26T01:30:00Z"],
            ),
            f(
                "cron 30 2 New York, spring forward",
                "America/New_York",
                "cron",
                cron("30 2 * * *"),
                "2026-03-07T00:00:00Z",
                &["2026-03-07T07:30:00Z", "2026-03-08T07:30:00Z", "2026-03-09T06:30:00Z"],
            ),
            f(
                "cron 30 2 New York, fall back",
                "America/New_York",
                "cron",
                cron("30 2 * * *"),
                "2026-10-31T00:00:00Z",
                &["2026-10-31T06:30:00Z", "2026-11-01T07:30:00Z", "2026-11-02T07:30:00Z"],
            ),
            f(
                "cron 30 1 New York, fall back fires once",
                "America/New_York",
                "cron",
                cron("30 1 * * *"),
                "2026-10-31T00:00:00Z",
                &["2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"],
            ),
            f(
                "cron 0,30 2 Berlin, both gap times land after the gap",
                "Europe/Berlin",
                "cron",
                cron("0,30 2 * * *"),
                "2026-03-29T00:30:00Z",
                &["2026-03-29T01:00:00Z", "2026-03-29T01:30:00Z", "2026-03-30T00:00:00Z"],
            ),
            f(
                "cron hourly Berlin, fall back: repeated 02:00 fires once",
                "Europe/Berlin",
                "cron",
                cron("0 * * * *"),
                "2026-10-24T23:00:00Z",
                &["2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z", "2026-10-25T03:00:00Z"],
            ),
            // --- cron syntax ---
            f(
                "cron */15",
                "UTC",
                "cron",
                cron("*/15 * * * *"),
                "2026-11-23T09:07:30Z",
                &["2026-11-23T09:15:00Z", "2026-11-23T09:30:00Z", "2026-11-23T09:45:00Z", "2026-11-23T10:00:00Z"],
            ),
            f(
                "cron 0 9-17/2 * * MON-FRI, over a weekend",
                "UTC",
                "cron",
                cron("0 9-17/2 * * MON-FRI"),
                "2026-11-27T16:00:00Z",
                &["2026-11-27T17:00:00Z", "2026-11-30T09:00:00Z", "2026-11-30T11:00:00Z"],
            ),
            f(
                "cron 0 0 1,15 * *",
                "UTC",
                "cron",
                cron("0 0 1,15 * *"),
                "2026-11-20T00:00:00Z",
                &["2026-12-01T00:00:00Z", "2026-12-15T00:00:00Z", "2027-01-01T00:00:00Z"],
            ),
            f(
                "cron 0 12 * JAN,JUL 0: Sundays of January and July",
                "UTC",
                "cron",
                cron("0 12 * jan,JUL 0"),
                "2026-06-01T00:00:00Z",
                &[
                    "2026-07-05T12:00:00Z",
                    "2026-07-12T12:00:00Z",
                    "2026-07-19T12:00:00Z",
                    "2026-07-26T12:00:00Z",
                    "2027-01-03T12:00:00Z",
                ],
            ),
            f(
                "cron 0 0 13 * 5: the 13th OR a Friday",
                "UTC",
                "cron",
                cron("0 0 13 * 5"),
                "2026-11-01T00:00:00Z",
                &[
                    "2026-11-06T00:00:00Z",
                    "2026-11-13T00:00:00Z",
                    "2026-11-20T00:00:00Z",
                    "2026-11-27T00:00:00Z",
                    "2026-12-04T00:00:00Z",
                    "2026-12-11T00:00:00Z",
                    "2026-12-13T00:00:00Z",
                    "2026-12-18T00:00:00Z",
                ],
            ),
            f(
                "cron 0 0 13 * */7: a star day-of-week ANDs, so Sunday the 13th",
                "UTC",
                "cron",
                cron("0 0 13 * */7"),
                "2026-11-01T00:00:00Z",
                &["2026-12-13T00:00:00Z", "2027-06-13T00:00:00Z"],
            ),
            f(
                "cron 7 as Sunday, A/S to the field max",
                "UTC",
                "cron",
                cron("50/5 23 * * 7"),
                "2026-11-22T23:50:00Z",
                &["2026-11-22T23:55:00Z", "2026-11-29T23:50:00Z"],
            ),
            f(
                "cron 0 0 29 2 *: leap days only",
                "UTC",
                "cron",
                cron("0 0 29 2 *"),
                "2026-01-01T00:00:00Z",
                &["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"],
            ),
            f(
                "@daily in Berlin",
                "Europe/Berlin",
                "cron",
                cron("@daily"),
                "2026-11-23T12:00:00Z",
                &["2026-11-23T23:00:00Z", "2026-11-24T23:00:00Z"],
            ),
            f("@hourly", "UTC", "cron", cron("@hourly"), ANCHOR, &["2026-11-23T10:00:00Z", "2026-11-23T11:00:00Z"]),
            f("@weekly", "UTC", "cron", cron("@WEEKLY"), ANCHOR, &["2026-11-29T00:00:00Z", "2026-12-06T00:00:00Z"]),
            f("@monthly", "UTC", "cron", cron("@monthly"), ANCHOR, &["2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"]),
            f("@yearly", "UTC", "cron", cron("@annually"), ANCHOR, &["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"]),
            f(
                "crontab fields, an integer among them",
                "UTC",
                "crontab",
                json!({"minute": 0, "hour": "*/6"}),
                "2026-11-23T05:00:00Z",
                &["2026-11-23T06:00:00Z", "2026-11-23T12:00:00Z", "2026-11-23T18:00:00Z", "2026-11-24T00:00:00Z"],
            ),
            f(
                "crontab weekdays by name",
                "America/New_York",
                "crontab",
                json!({"minute": "30", "hour": "8", "day_of_week": "mon-fri", "month_of_year": "*", "day_of_month": "*"}),
                "2026-11-27T12:00:00Z",
                &["2026-11-27T13:30:00Z", "2026-11-30T13:30:00Z"],
            ),
            // --- frequency: counted from the anchor ---
            f(
                "run_every 3600 asked at the anchor",
                "UTC",
                "frequency",
                json!({"run_every": 3600}),
                ANCHOR,
                &["2026-11-23T10:00:00Z", "2026-11-23T11:00:00Z", "2026-11-23T12:00:00Z"],
            ),
            f(
                "run_every 3600.0 asked before the anchor: k >= 1",
                "UTC",
                "frequency",
                json!({"run_every": 3600.0}),
                "2026-11-23T08:00:00Z",
                &["2026-11-23T10:00:00Z", "2026-11-23T11:00:00Z"],
            ),
            f(
                "run_every 90 asked between fires",
                "Europe/Berlin",
                "frequency",
                json!({"run_every": 90}),
                "2026-11-23T10:00:10Z",
                &["2026-11-23T10:01:30Z", "2026-11-23T10:03:00Z"],
            ),
        ]
    }

    #[test]
    fn fire_times() {
        let anchor = ts(ANCHOR);
        for case in fire_cases() {
            let e = entry(&body(case.tz, case.schedule_type, case.info.clone()));
            let mut at = ts(case.from);
            for (i, want) in case.fires.iter().enumerate() {
                let got = e.next_after(at, anchor).unwrap_or_else(|| panic!("{}: no fire #{i}", case.name));
                assert_eq!(got, ts(want), "{}: fire #{i} after {at}", case.name);
                at = got;
            }
        }
    }

    #[test]
    fn start_on_forms() {
        let cases = [
            ("UTC", "2026-11-23T09:00", "2026-11-23T09:00:00"),
            ("UTC", "2026-11-23T09:00:30", "2026-11-23T09:00:30"),
            ("UTC", "2026-11-23 09:00", "2026-11-23T09:00:00"),
            ("UTC", "2026-11-23", "2026-11-23T00:00:00"),
            ("Europe/Berlin", "2026-11-23T09:00", "2026-11-23T09:00:00"),
            ("Europe/Berlin", "2026-11-23T09:00Z", "2026-11-23T10:00:00"),
            ("Europe/Berlin", "2026-11-23T09:00:00+01:00", "2026-11-23T09:00:00"),
            ("Europe/Berlin", "2026-11-23 09:00-05:00", "2026-11-23T15:00:00"),
            ("America/New_York", "2026-11-23Z", "2026-11-22T19:00:00"),
        ];
        for (tz, start_on, want) in cases {
            let e =
                entry(&body(tz, "interval", json!({"frequency": "Daily", "repeat_every": 1, "start_on": start_on})));
            let Rule::Interval { start_on: got, .. } = e.rule else { panic!("{start_on}: not an interval") };
            assert_eq!(got.to_string(), want, "{start_on} in {tz}");
        }
    }

    #[test]
    fn parse_defaults_and_read_back_keys() {
        let mut b = body("UTC", "cron", json!({"expression": "0 * * * *"}));
        let e = entry(&b);
        assert_eq!((e.enabled, e.timezone.as_str(), e.params.len()), (true, "UTC", 0));
        assert_eq!((e.id, e.entry_id), (None, None));
        for key in READ_BACK_KEYS {
            b[key] = json!("anything");
        }
        b["id"] = json!("s1");
        b["entry_id"] = json!("e1");
        b["enabled"] = json!(false);
        b["params"] = json!({"x": 1});
        let e = entry(&b);
        assert_eq!((e.id.as_deref(), e.entry_id.as_deref(), e.enabled), (Some("s1"), Some("e1"), false));
        assert_eq!(e.params["x"], json!(1));
        let e = entry(&body(
            "UTC",
            "interval",
            json!({"frequency": "WEEKLY", "repeat_every": 2.0, "start_on": "2026-11-23"}),
        ));
        assert!(matches!(e.rule, Rule::Interval { frequency: Frequency::Weekly, repeat_every: 2, .. }));
        // A schedule exactly as `GET /api/v1/schedule/{id}` shows it (the
        // engine's `Schedule::to_json`) posts back as it is.
        let shown = json!({
            "application_id": "job", "entry_id": null, "params": {}, "enabled": true, "timezone": "UTC",
            "schedule": {"schedule_type": "frequency", "schedule_info": {"run_every": 60}},
            "id": "s1", "description": "Every minute", "next_fire_at": "2026-11-23T08:02:00Z", "next_run": "in a minute",
            "last_fire_at": "2026-11-23T08:01:00Z", "last_run_id": "isapp-1", "last_error": null,
            "created_at": "2026-11-23T08:00:00Z", "updated_at": "2026-11-23T08:00:00Z"
        });
        assert_eq!(entry(&shown).to_json(), entry(&shown.clone()).to_json());
        assert_eq!(entry(&shown).id.as_deref(), Some("s1"));
    }

    #[test]
    fn out_of_range_numbers_say_which_bound() {
        let message = |info: Value| ScheduleEntry::parse(&body("UTC", "frequency", info)).unwrap_err().0[0].clone();
        let too_big = message(json!({"run_every": 1e300}));
        assert_eq!((too_big.rule.as_str(), too_big.message), ("too_large", format!("must be at most {MAX_RUN_EVERY}")));
        let too_small = message(json!({"run_every": 0}));
        assert_eq!((too_small.rule.as_str(), too_small.message.as_str()), ("too_small", "must be at least 1"));
        assert_eq!(message(json!({"run_every": 1.5})).rule, "type");
        assert!(ScheduleEntry::parse(&body("UTC", "frequency", json!({"run_every": MAX_RUN_EVERY}))).is_ok());
        assert!(ScheduleEntry::parse(&body("UTC", "frequency", json!({"run_every": 3.6e3}))).is_ok());
        let interval = |n: Value| {
            body("UTC", "interval", json!({"frequency": "Daily", "repeat_every": n, "start_on": "2026-11-23"}))
        };
        let v = ScheduleEntry::parse(&interval(json!(1e300))).unwrap_err().0.remove(0);
        assert_eq!((v.rule.as_str(), v.message), ("too_large", format!("must be at most {MAX_REPEAT_EVERY}")));
    }

    /// `(field, rule)` pairs a refused body must report, all of them and no others.
    type Expected = &'static [(&'static str, &'static str)];

    #[test]
    fn violations() {
        let info = |i: Value| body("UTC", "interval", i);
        let iv = |frequency: Value, repeat_every: Value, start_on: Value| {
            info(json!({"frequency": frequency, "repeat_every": repeat_every, "start_on": start_on}))
        };
        let ok_start = || json!("2026-11-23T09:00");
        let freq = |i: Value| body("UTC", "frequency", i);
        let tab = |i: Value| body("UTC", "crontab", i);
        let cron = |e: Value| body("UTC", "cron", json!({ "expression": e }));
        let ok = || body("UTC", "cron", json!({"expression": "* * * * *"}));
        let with = |key: &str, value: Value| {
            let mut b = ok();
            b[key] = value;
            b
        };
        let without = |key: &str| {
            let mut b = ok();
            b.as_object_mut().unwrap().remove(key);
            b
        };
        let cases: Vec<(&str, Value, Expected)> = vec![
            ("not an object", json!([]), &[("", "type")]),
            ("no application", without("application_id"), &[("application_id", "required")]),
            ("empty application", with("application_id", json!("")), &[("application_id", "required")]),
            ("application not a string", with("application_id", json!(5)), &[("application_id", "type")]),
            ("entry_id", with("entry_id", json!(5)), &[("entry_id", "type")]),
            ("id", with("id", json!({})), &[("id", "type")]),
            ("params", with("params", json!([])), &[("params", "type")]),
            ("enabled", with("enabled", json!("yes")), &[("enabled", "type")]),
            ("timezone type", with("timezone", json!(1)), &[("timezone", "type")]),
            ("timezone unknown", with("timezone", json!("Mars/Olympus_Mons")), &[("timezone", "time_zone")]),
            ("timezone empty", with("timezone", json!("")), &[("timezone", "time_zone")]),
            ("unknown key", with("repeat", json!(1)), &[("repeat", "unknown_field")]),
            ("no schedule", without("schedule"), &[("schedule", "required")]),
            ("schedule type", with("schedule", json!("hourly")), &[("schedule", "type")]),
            (
                "schedule empty",
                with("schedule", json!({})),
                &[("schedule.schedule_info", "required"), ("schedule.schedule_type", "required")],
            ),
            (
                "schedule unknown key",
                with(
                    "schedule",
                    json!({"schedule_type": "cron", "schedule_info": {"expression": "* * * * *"}, "x": 1}),
                ),
                &[("schedule.x", "unknown_field")],
            ),
            (
                "schedule_type unknown",
                with("schedule", json!({"schedule_type": "weekly", "schedule_info": {}})),
                &[("schedule.schedule_type", "one_of")],
            ),
            (
                "schedule_type not a string",
                with("schedule", json!({"schedule_type": 1, "schedule_info": {}})),
                &[("schedule.schedule_type", "type")],
            ),
            (
                "schedule_info not an object",
                with("schedule", json!({"schedule_type": "cron", "schedule_info": "* * * * *"})),
                &[("schedule.schedule_info", "type")],
            ),
            // frequency
            ("run_every missing", freq(json!({})), &[("schedule.schedule_info.run_every", "required")]),
            ("run_every string", freq(json!({"run_every": "3600"})), &[("schedule.schedule_info.run_every", "type")]),
            ("run_every 0", freq(json!({"run_every": 0})), &[("schedule.schedule_info.run_every", "too_small")]),
            (
                "run_every negative",
                freq(json!({"run_every": -60})),
                &[("schedule.schedule_info.run_every", "too_small")],
            ),
            (
                "run_every -1e300",
                freq(json!({"run_every": -1e300})),
                &[("schedule.schedule_info.run_every", "too_small")],
            ),
            (
                "run_every 1e300",
                freq(json!({"run_every": 1e300})),
                &[("schedule.schedule_info.run_every", "too_large")],
            ),
            ("run_every 1e18", freq(json!({"run_every": 1e18})), &[("schedule.schedule_info.run_every", "too_large")]),
            (
                "run_every over 100 years",
                freq(json!({"run_every": MAX_RUN_EVERY + 1})),
                &[("schedule.schedule_info.run_every", "too_large")],
            ),
            ("run_every fraction", freq(json!({"run_every": 1.5})), &[("schedule.schedule_info.run_every", "type")]),
            (
                "run_every huge",
                freq(json!({"run_every": u64::MAX})),
                &[("schedule.schedule_info.run_every", "too_large")],
            ),
            (
                "run_every i64::MAX",
                freq(json!({"run_every": i64::MAX})),
                &[("schedule.schedule_info.run_every", "too_large")],
            ),
            (
                "frequency unknown key",
                freq(json!({"run_every": 60, "runEvery": 60})),
                &[("schedule.schedule_info.runEvery", "unknown_field")],
            ),
            // crontab
            ("crontab hour 24", tab(json!({"hour": "24"})), &[("schedule.schedule_info.hour", "cron")]),
            ("crontab hour as number 24", tab(json!({"hour": 24})), &[("schedule.schedule_info.hour", "cron")]),
            ("crontab negative", tab(json!({"minute": -1})), &[("schedule.schedule_info.minute", "type")]),
            ("crontab bool", tab(json!({"minute": true})), &[("schedule.schedule_info.minute", "type")]),
            (
                "crontab bad weekday name",
                tab(json!({"day_of_week": "FUNDAY"})),
                &[("schedule.schedule_info.day_of_week", "cron")],
            ),
            (
                "crontab empty field",
                tab(json!({"day_of_month": ""})),
                &[("schedule.schedule_info.day_of_month", "cron")],
            ),
            (
                "crontab two bad fields and a bad type",
                tab(json!({"minute": "1-", "month_of_year": "0", "hour": [1]})),
                &[
                    ("schedule.schedule_info.hour", "type"),
                    ("schedule.schedule_info.minute", "cron"),
                    ("schedule.schedule_info.month_of_year", "cron"),
                ],
            ),
            ("crontab unknown key", tab(json!({"second": "0"})), &[("schedule.schedule_info.second", "unknown_field")]),
            (
                "crontab never fires",
                tab(json!({"minute": 0, "hour": 0, "day_of_month": 30, "month_of_year": "feb"})),
                &[("schedule.schedule_info", "never_fires")],
            ),
            // cron
            ("cron missing", body("UTC", "cron", json!({})), &[("schedule.schedule_info.expression", "required")]),
            ("cron not a string", cron(json!(5)), &[("schedule.schedule_info.expression", "type")]),
            ("cron 4 fields", cron(json!("* * * *")), &[("schedule.schedule_info.expression", "cron")]),
            ("cron 6 fields", cron(json!("0 * * * * *")), &[("schedule.schedule_info.expression", "cron")]),
            ("cron empty", cron(json!("")), &[("schedule.schedule_info.expression", "cron")]),
            ("cron minute 60", cron(json!("60 * * * *")), &[("schedule.schedule_info.expression", "cron")]),
            ("cron hour 24", cron(json!("0 24 * * *")), &[("schedule.schedule_info.expression", "cron")]),
            ("cron day 0", cron(json!("0 0 0 * *")), &[("schedule.schedule_info.expression", "cron")]),
            ("cron day 32", cron(json!("0 0 32 * *")), &[("schedule.schedule_info.expression", "cron")]),
            ("cron month 13", cron(json!("0 0 * 13 *")), &[("schedule.schedule_info.expression", "cron")]),
            ("cron weekday 8", cron(json!("0 0 * * 8")), &[("schedule.schedule_info.expression", "cron")]),
            ("cron backwards", cron(json!("5-1 * * * *")), &[("schedule.schedule_info.expression", "cron")]),
            ("cron step 0", cron(json!("*/0 * * * *")), &[("schedule.schedule_info.expression", "cron")]),
            ("cron bad step", cron(json!("*/x * * * *")), &[("schedule.schedule_info.expression", "cron")]),
            ("cron empty item", cron(json!("1,,2 * * * *")), &[("schedule.schedule_info.expression", "cron")]),
            ("cron garbage", cron(json!("a b c d e")), &[("schedule.schedule_info.expression", "cron"); 5]),
            ("cron name in minutes", cron(json!("MON * * * *")), &[("schedule.schedule_info.expression", "cron")]),
            ("cron unknown macro", cron(json!("@reboot")), &[("schedule.schedule_info.expression", "cron")]),
            ("cron 30 Feb", cron(json!("0 0 30 2 *")), &[("schedule.schedule_info.expression", "never_fires")]),
            ("cron 31 Apr", cron(json!("0 0 31 4 *")), &[("schedule.schedule_info.expression", "never_fires")]),
            (
                "cron unknown key",
                body("UTC", "cron", json!({"expression": "* * * * *", "tz": "UTC"})),
                &[("schedule.schedule_info.tz", "unknown_field")],
            ),
            // interval
            (
                "interval frequency unknown",
                iv(json!("Yearly"), json!(1), ok_start()),
                &[("schedule.schedule_info.frequency", "one_of")],
            ),
            (
                "interval frequency missing",
                info(json!({"repeat_every": 1, "start_on": "2026-11-23"})),
                &[("schedule.schedule_info.frequency", "required")],
            ),
            (
                "interval frequency not a string",
                iv(json!(1), json!(1), ok_start()),
                &[("schedule.schedule_info.frequency", "type")],
            ),
            (
                "repeat_every 0",
                iv(json!("Daily"), json!(0), ok_start()),
                &[("schedule.schedule_info.repeat_every", "too_small")],
            ),
            (
                "repeat_every 10001",
                iv(json!("Daily"), json!(10_001), ok_start()),
                &[("schedule.schedule_info.repeat_every", "too_large")],
            ),
            (
                "repeat_every 1e300",
                iv(json!("Daily"), json!(1e300), ok_start()),
                &[("schedule.schedule_info.repeat_every", "too_large")],
            ),
            (
                "repeat_every u64::MAX",
                iv(json!("Daily"), json!(u64::MAX), ok_start()),
                &[("schedule.schedule_info.repeat_every", "too_large")],
            ),
            (
                "repeat_every -1e300",
                iv(json!("Daily"), json!(-1e300), ok_start()),
                &[("schedule.schedule_info.repeat_every", "too_small")],
            ),
            (
                "repeat_every string",
                iv(json!("Daily"), json!("2"), ok_start()),
                &[("schedule.schedule_info.repeat_every", "type")],
            ),
            (
                "repeat_every missing",
                info(json!({"frequency": "Daily", "start_on": "2026-11-23"})),
                &[("schedule.schedule_info.repeat_every", "required")],
            ),
            (
                "start_on missing",
                info(json!({"frequency": "Daily", "repeat_every": 1})),
                &[("schedule.schedule_info.start_on", "required")],
            ),
            (
                "start_on not a string",
                iv(json!("Daily"), json!(1), json!(20261123)),
                &[("schedule.schedule_info.start_on", "type")],
            ),
            (
                "start_on words",
                iv(json!("Daily"), json!(1), json!("tomorrow")),
                &[("schedule.schedule_info.start_on", "date_time")],
            ),
            (
                "start_on 30 February",
                iv(json!("Daily"), json!(1), json!("2026-02-30")),
                &[("schedule.schedule_info.start_on", "date_time")],
            ),
            (
                "start_on hour 25",
                iv(json!("Daily"), json!(1), json!("2026-11-23T25:00")),
                &[("schedule.schedule_info.start_on", "date_time")],
            ),
            (
                "start_on trailing text",
                iv(json!("Daily"), json!(1), json!("2026-11-23T09:00 CET")),
                &[("schedule.schedule_info.start_on", "date_time")],
            ),
            (
                "start_on bad offset",
                iv(json!("Daily"), json!(1), json!("2026-11-23T09:00+1")),
                &[("schedule.schedule_info.start_on", "date_time")],
            ),
            (
                "interval unknown key",
                info(json!({"frequency": "Daily", "repeat_every": 1, "start_on": "2026-11-23", "repeatEvery": 2})),
                &[("schedule.schedule_info.repeatEvery", "unknown_field")],
            ),
            (
                "everything at once",
                json!({
                    "timezone": "Nowhere/Special",
                    "enabled": 1,
                    "extra": true,
                    "schedule": {
                        "schedule_type": "interval",
                        "schedule_info": {"frequency": "Fortnightly", "repeat_every": 0, "start_on": "soon"},
                    },
                }),
                &[
                    ("application_id", "required"),
                    ("enabled", "type"),
                    ("extra", "unknown_field"),
                    ("schedule.schedule_info.frequency", "one_of"),
                    ("schedule.schedule_info.repeat_every", "too_small"),
                    ("schedule.schedule_info.start_on", "date_time"),
                    ("timezone", "time_zone"),
                ],
            ),
        ];
        for (name, body, want) in cases {
            let mut want: Vec<(String, String)> = want.iter().map(|(f, r)| (f.to_string(), r.to_string())).collect();
            want.sort();
            assert_eq!(refused(&body), want, "{name}");
        }
    }

    #[test]
    fn cron_messages_name_the_field() {
        let Err(Invalid(v)) = CronExpr::parse("x", "0 24 * * *") else { panic!("accepted") };
        assert_eq!(v[0].message, "hour field: 24 is out of range 0-23");
        let Err(Invalid(v)) = CronExpr::parse("x", "0 0 * * SAT-SUN") else { panic!("accepted") };
        assert_eq!(v[0].message, "day-of-week field: range \"SAT-SUN\" runs backwards");
        assert_eq!(CronExpr::parse("x", " @Daily ").unwrap().as_str(), "@Daily");
    }

    #[test]
    fn describe_texts() {
        let iv = |tz, frequency: &str, n: i64, start_on: &str| {
            body(tz, "interval", json!({"frequency": frequency, "repeat_every": n, "start_on": start_on}))
        };
        let cases = [
            (body("UTC", "frequency", json!({"run_every": 3600})), "Every hour"),
            (body("UTC", "frequency", json!({"run_every": 7200})), "Every 2 hours"),
            (body("UTC", "frequency", json!({"run_every": 1800})), "Every 30 minutes"),
            (body("UTC", "frequency", json!({"run_every": 5400})), "Every 90 minutes"),
            (body("UTC", "frequency", json!({"run_every": 90})), "Every 90 seconds"),
            (body("UTC", "frequency", json!({"run_every": 1})), "Every second"),
            (body("UTC", "frequency", json!({"run_every": 86400})), "Every day"),
            (body("UTC", "frequency", json!({"run_every": 172800})), "Every 2 days"),
            (iv("UTC", "Minute", 1, "2026-11-23T09:00"), "Every minute from 2026-11-23 09:00 UTC"),
            (iv("UTC", "Hourly", 2, "2026-11-23T09:00"), "Every 2 hours from 2026-11-23 09:00 UTC"),
            (iv("Europe/Berlin", "Daily", 1, "2026-11-23T02:30"), "Every day from 2026-11-23 02:30 Europe/Berlin"),
            (iv("UTC", "Weekly", 2, "2026-11-23T09:00:15"), "Every 2 weeks from 2026-11-23 09:00:15 UTC"),
            (iv("UTC", "Monthly", 1, "2026-01-31T10:00"), "Every month from 2026-01-31 10:00 UTC"),
            (body("UTC", "cron", json!({"expression": "*/5 * * * *"})), "Cron */5 * * * * (UTC)"),
            (body("America/New_York", "cron", json!({"expression": "@daily"})), "Cron @daily (America/New_York)"),
            (body("UTC", "crontab", json!({"minute": 0, "hour": "*/2"})), "Cron 0 */2 * * * (UTC)"),
        ];
        for (b, want) in cases {
            assert_eq!(entry(&b).describe(), want);
        }
    }

    #[test]
    fn to_json_round_trips() {
        let bodies = [
            json!({
                "id": "s1",
                "application_id": "app",
                "entry_id": "e1",
                "params": {"a": [1, 2]},
                "enabled": false,
                "timezone": "Europe/Berlin",
                "schedule": {"schedule_type": "interval", "schedule_info": {"frequency": "daily", "repeat_every": 1, "start_on": "2026-11-23T09:00Z"}},
            }),
            body("UTC", "frequency", json!({"run_every": 3600.0})),
            body("America/New_York", "crontab", json!({"minute": 0, "day_of_week": "mon"})),
            body("UTC", "cron", json!({"expression": "@weekly"})),
            json!({"application_id": "app", "schedule": {"schedule_type": "cron", "schedule_info": {"expression": "0 0 13 * 5"}}}),
        ];
        for b in bodies {
            let first = entry(&b);
            let json = first.to_json();
            assert!(json.get("id").is_none());
            assert_eq!(json["schedule"]["schedule_info"], b["schedule"]["schedule_info"]);
            let again = entry(&json);
            assert_eq!(again, ScheduleEntry { id: None, ..first.clone() });
            assert_eq!(again.to_json(), json);
        }
    }

    #[test]
    fn relative_texts() {
        let now = ts(ANCHOR);
        let s = 1i64;
        let (m, h, d) = (60 * s, 3600 * s, 86_400 * s);
        let cases = [
            (0, "a few seconds ago"),
            (30 * s, "in a few seconds"),
            (44 * s, "in a few seconds"),
            (45 * s, "in a minute"),
            (89 * s, "in a minute"),
            (90 * s, "in 2 minutes"),
            (5 * m, "in 5 minutes"),
            (44 * m, "in 44 minutes"),
            (45 * m, "in an hour"),
            (89 * m, "in an hour"),
            (90 * m, "in 2 hours"),
            (3 * h, "in 3 hours"),
            (21 * h, "in 21 hours"),
            (22 * h, "in a day"),
            (35 * h, "in a day"),
            (36 * h, "in 2 days"),
            (4 * d, "in 4 days"),
            (25 * d, "in 25 days"),
            (26 * d, "in a month"),
            (44 * d, "in a month"),
            (60 * d, "in 2 months"),
            (319 * d, "in 10 months"),
            (320 * d, "in a year"),
            (547 * d, "in a year"),
            (548 * d, "in 2 years"),
            (3 * 365 * d, "in 3 years"),
            (-10 * s, "a few seconds ago"),
            (-5 * m, "5 minutes ago"),
            (-2 * h, "2 hours ago"),
            (-400 * d, "a year ago"),
        ];
        for (delta, want) in cases {
            let then = now.checked_add(SignedDuration::from_secs(delta)).unwrap();
            assert_eq!(relative(now, then), want, "{delta} s");
        }
    }

    #[test]
    fn next_after_is_cheap() {
        // Guards against an accidental walk from start_on or minute-by-minute
        // scan: 10,000 calls each far from the start stay fast even unoptimized.
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        let cron = CronExpr::parse("x", "0 0 29 2 *").unwrap();
        let every = CronExpr::parse("x", "* * * * *").unwrap();
        let mut at = ts("2026-03-01T00:00:00Z");
        for _ in 0..10_000 {
            assert!(cron.next_after(at, &tz).is_some());
            at = every.next_after(at, &tz).unwrap();
        }
        let e = entry(&body(
            "UTC",
            "interval",
            json!({"frequency": "Minute", "repeat_every": 1, "start_on": "1970-01-01"}),
        ));
        assert_eq!(e.next_after(ts("9000-01-01T00:00:30Z"), at), Some(ts("9000-01-01T00:01:00Z")));
        let e =
            entry(&body("UTC", "interval", json!({"frequency": "Daily", "repeat_every": 1, "start_on": "0001-01-01"})));
        assert_eq!(e.next_after(ts("9000-01-01T00:00:00Z"), at), Some(ts("9000-01-02T00:00:00Z")));
    }
}
