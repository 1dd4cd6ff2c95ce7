import t from 'tap';
import { version } from 'rt-actors';
t.equal(typeof version, 'string');
