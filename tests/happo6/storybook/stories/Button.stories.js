export default { title: 'Button' };

const button = (kind, label) => {
  const el = document.createElement('button');
  el.className = `btn ${kind}`;
  el.textContent = label;
  return el;
};

export const Primary = () => button('primary', 'Primary');
export const Secondary = () => button('secondary', 'Secondary');
