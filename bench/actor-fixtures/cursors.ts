// The shipped cursor example, served by the benchmark's actors folder.
export { default } from '../../actors/cursors.js';
