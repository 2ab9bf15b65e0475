// The layout of every TypeScript, JavaScript, JSON and Markdown file: `npm run format` writes it, `npm run format:check` checks it.
export default {
  printWidth: 160,
};
