// The rules of a head count and of a new group, as the API holds them
// (service/domain/headcounts.py, rules.py), checked before anything is queued.
// The limits come from the server (the shell's JSON block), and so do the messages:
// in English they are the API's words (tests/test_field.py holds them to it).

const CONTROL = /[\x00-\x08\x0b-\x1f\x7f]/;
const CONTROL_OR_NEWLINE = /[\x00-\x1f\x7f]/;
const INVISIBLE = /[\p{Cf}\u2028\u2029]/u;
const JOINERS = /[\u200c\u200d]/g;
const WHOLE = /^[+-]?[0-9]{1,15}$/;

export function fill(template, values = {}) {
  return template.replace(/%\((\w+)\)s/g, (_, name) => String(values[name] ?? ""));
}

export class Rules {
  constructor(limits, messages) {
    this.limits = limits;
    this.m = messages;
  }

  // A count typed in a box: "" is not given, else a whole number within the limits.
  count(raw) {
    const text = raw.trim();
    if (!WHOLE.test(text)) throw this.m.not_integer;
    const number = Number(text);
    if (number < 0) throw this.m.negative;
    if (number > this.limits.count_maximum) throw this.m.too_large;
    return number;
  }

  // rules.text: trimmed, no control characters (newlines where multiline), not empty
  // unless nullable (then null), at most `max` characters (code points, as Python counts).
  text(raw, { max, multiline = false, nullable = false }) {
    let value = multiline ? raw.replace(/\r\n/g, "\n") : raw;
    const pattern = multiline ? CONTROL : CONTROL_OR_NEWLINE;
    if (pattern.test(value.replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, ""))) throw this.m.control;
    if (INVISIBLE.test(value.replace(JOINERS, ""))) throw this.m.invisible;
    value = value.trim();
    if ([...value].length > max) throw fill(this.m.too_long, { length: max });
    if (!value) {
      if (nullable) return null;
      throw this.m.empty;
    }
    return value;
  }

  // A moment typed in a datetime-local box, on the device's clock and zone.
  moment(raw) {
    if (!raw) throw this.m.missing;
    const moment = new Date(raw);
    if (Number.isNaN(moment.getTime())) throw this.m.not_datetime;
    return moment;
  }

  // The form's fields -> { body, errors }: the body as POST /api/v1/reports takes it,
  // or the errors by field name as the API names them ("sadd.male_0_4").
  report(form, now = new Date()) {
    const errors = {};
    const take = (name, read) => {
      try {
        return read();
      } catch (message) {
        if (typeof message !== "string") throw message;
        errors[name] = message;
        return undefined;
      }
    };
    const body = {};
    const total = take("total", () => {
      if (!form.total.trim()) throw this.m.missing;
      return this.count(form.total);
    });
    const observed = take("observed_at", () => this.moment(form.observed_at));
    const sadd = {};
    const saddGiven = this.limits.sadd_keys.some((key) => (form.sadd[key] || "").trim());
    if (saddGiven) {
      for (const key of this.limits.sadd_keys) {
        const raw = form.sadd[key] || "";
        sadd[key] = take(`sadd.${key}`, () => {
          if (!raw.trim()) throw this.m.missing;
          return this.count(raw);
        });
      }
    }
    const vulnerable = {};
    for (const key of this.limits.vulnerable_keys) {
      const raw = form.vulnerable[key] || "";
      if (raw.trim()) vulnerable[key] = take(`vulnerable.${key}`, () => this.count(raw));
    }
    const needs = form.needs.map((need, index) => ({
      sector: need.sector,
      severity: Number(need.severity),
      note: take(`needs.${index}.note`, () =>
        this.text(need.note || "", { max: this.limits.need_note_length, multiline: true, nullable: true })),
    }));
    if (needs.length > this.limits.max_needs) {
      errors.needs = fill(this.m.too_many, { length: this.limits.max_needs });
    }
    const note = take("note", () =>
      this.text(form.note || "", { max: this.limits.note_length, multiline: true, nullable: true }));
    if (Object.keys(errors).length) return { errors, summary: this.m.invalid_fields };

    // The rules between fields (headcounts.broken_rules), once every field is sound.
    const latest = new Date(now.getTime() + this.limits.clock_skew_seconds * 1000);
    if (observed > latest) errors.observed_at = this.m.future;
    else if (observed < new Date(this.limits.earliest_observation)) errors.observed_at = this.m.too_early;
    if (saddGiven) {
      const added = Object.values(sadd).reduce((a, b) => a + b, 0);
      if (added !== total) errors.sadd = fill(this.m.breakdown_sum, { added, total });
    }
    for (const [key, value] of Object.entries(vulnerable)) {
      if (value > total) errors[`vulnerable.${key}`] = fill(this.m.exceeds_total, { total });
    }
    if (Object.keys(errors).length) return { errors, summary: this.m.broken_rule };

    body.observed_at = isoWithZone(observed);
    body.total = total;
    if (saddGiven) body.sadd = sadd;
    if (Object.keys(vulnerable).length) body.vulnerable = vulnerable;
    if (needs.length) {
      body.needs = needs.map((n) => (n.note === null ? { sector: n.sector, severity: n.severity } : n));
    }
    if (note !== null) body.note = note;
    return { body, errors: null };
  }

  // A new group: POST /api/v1/groups's label and origin.
  group(form) {
    const errors = {};
    let label = null;
    let origin = null;
    if (!form.site_id) errors.site_id = this.m.missing;
    try {
      label = this.text(form.label || "", { max: this.limits.label_length });
    } catch (message) {
      errors.label = message;
    }
    try {
      origin = this.text(form.origin || "", { max: this.limits.label_length, nullable: true });
    } catch (message) {
      errors.origin = message;
    }
    if (Object.keys(errors).length) return { errors };
    const body = { site_id: form.site_id, label };
    if (origin !== null) body.origin = origin;
    return { body, errors: null };
  }
}

// ISO 8601 with the device's offset ("2023-09-25T14:05:00+04:00"): the moment as the
// coordinator saw it on their clock, with its zone.
export function isoWithZone(moment) {
  const pad = (n) => String(Math.abs(n)).padStart(2, "0");
  const offset = -moment.getTimezoneOffset();
  const sign = offset >= 0 ? "+" : "-";
  return (
    `${String(moment.getFullYear()).padStart(4, "0")}-${pad(moment.getMonth() + 1)}-${pad(moment.getDate())}` +
    `T${pad(moment.getHours())}:${pad(moment.getMinutes())}:${pad(moment.getSeconds())}` +
    `${sign}${pad(Math.trunc(offset / 60))}:${pad(offset % 60)}`
  );
}

// The value of a datetime-local box for a moment (device's zone).
export function localInput(moment) {
  return isoWithZone(moment).slice(0, 19);
}
