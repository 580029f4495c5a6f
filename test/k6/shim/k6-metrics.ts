/**
 * The adapter's `k6/metrics`: Counter, Gauge, Rate and Trend that count what they are fed.
 */
import { state } from './state.ts';

class Metric {
  readonly name: string;
  constructor(name: string, type: string) {
    this.name = name;
    state.metrics[name] = { type, values: 0 };
  }

  add(_value: number | boolean, _tags?: Record<string, string>): void {
    state.metrics[this.name].values++;
  }
}

export class Counter extends Metric {
  constructor(name: string) {
    super(name, 'counter');
  }
}

export class Gauge extends Metric {
  constructor(name: string) {
    super(name, 'gauge');
  }
}

export class Rate extends Metric {
  constructor(name: string) {
    super(name, 'rate');
  }
}

export class Trend extends Metric {
  constructor(name: string, _isTime?: boolean) {
    super(name, 'trend');
  }
}

export default { Counter, Gauge, Rate, Trend };
